"""The node daemon (`zcl-agent`): what runs on every node, ZeroMQ's sshd.

Deployable alone: it imports zcl's shared wire format, keys and contracts, and nothing of the
controller side (executor, contexts, journals, schedules); import-linter checks it.
"""
