#!/bin/sh
# A simulated cluster node: sshd, step 03's node agent and step 02's worker, as one container.
# tini (PID 1) forwards SIGTERM here; we pass it on and wait, so every daemon drains.
set -eu
node="${NODE_NAME:?NODE_NAME is not set}"
if [ ! -f /etc/ssh/.made-here ]; then  # the image's host keys are every node's: make our own
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -A >/dev/null
    touch /etc/ssh/.made-here
fi
if [ -f /keys/ssh/id_ed25519.pub ]; then  # the cluster's SSH key logs in as zcl (bench, drill)
    install -d -o zcl -g zcl -m 700 /home/zcl/.ssh
    install -o zcl -g zcl -m 600 /keys/ssh/id_ed25519.pub /home/zcl/.ssh/authorized_keys
fi
# As many channels per connection as the agent takes commands in flight (sshd's default is 10).
/usr/sbin/sshd -D -e -o MaxSessions=64 -o MaxStartups=100:30:200 -o UseDNS=no &
# The daemons run as zcl, which owns this node's keys (and only this node's are mounted).
as_zcl() { setpriv --reuid=zcl --regid=zcl --init-groups env HOME=/home/zcl "$@"; }
as_zcl zcl-agent --bind "tcp://*:5560" --keys "/keys/nodes/$node" --file-root /var/lib/zcl-agent &
as_zcl zcl-worker --coordinator tcp://coordinator:5555 --name "$node" --keys "/keys/mdp/controllers/$node" \
    --tag "$node" &
trap 'kill -TERM $(jobs -p) 2>/dev/null; wait; exit 0' TERM INT
wait
