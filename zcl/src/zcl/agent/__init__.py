"""The node daemon (`zcl-agent`): what runs on every node, ZeroMQ's sshd.

Deployable alone: it imports the shared wire format, keys and contracts of cluster_sim, and
nothing of the controller side (executor, contexts, journals, schedules) nor of the lab.
"""
