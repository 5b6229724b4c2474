"""The Docker cluster's driver: what `docker/simulate-cluster.sh` does, verb by verb, in Python.

The script is a thin wrapper that runs `python -m zcl_lab.cluster_driver VERB ...` in
the controller's venv, so the README's commands stay as they were. One module a job:

    layout.py       where things are: the docker/ folder, docker/.build, the image names
    engine.py       the Docker Engine through the Docker SDK, and Compose (v1 or v2) by command
    key_mounts.py   each container's own keys, laid out privately under .build/mounts
    images.py       build (base image from Debian packages, wheelhouse, project images), cleanup
    node_faults.py  the faults injected into nodes; each returns when it took effect
    workloads.py    test, drill and bench: workloads run inside the cluster while faults happen
    deployment.py   deploy, rotate and remove: the Ansible playbooks against a bare cluster
    commands.py     the command line: the verbs, their options and their one-line errors
"""
