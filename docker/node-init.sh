#!/bin/sh
# A simulated cluster node: sshd, step 03's node agent and step 02's worker, as one container.
# tini (PID 1) forwards SIGTERM here; we pass it on and wait, so every daemon drains.
set -eu
node="${NODE_NAME:?NODE_NAME is not set}"
ssh-keygen -A >/dev/null
/usr/sbin/sshd -D -e &
python -m cluster_sim.node_agent --bind "tcp://*:5560" --keys "/keys/nodes/$node" &
python -m cluster_patterns.worker --coordinator tcp://coordinator:5555 --name "$node" \
    --tag "$node" &
trap 'kill -TERM $(jobs -p) 2>/dev/null; wait; exit 0' TERM INT
wait
