"""Heartbeats between real processes: a fast peer and a slow one, and a watcher that learns both.

Run `python -m cluster_patterns.heartbeat_demo demo`: two peers beat at 250 ms and 2.5 s; the
fast one is frozen with SIGSTOP and the time to detect it is printed; the slow one is never
called dead. Try `--freeze-after 0.2` to freeze the fast peer before it has been learned.
The rules themselves (Liveness, Backoff) are in heartbeat.py.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Sequence

import zmq

from cluster_patterns import cli, processes, protocol
from cluster_patterns.heartbeat import OUR_INTERVAL_S, Liveness


def beat(where: str, interval_s: float, name: str) -> None:
    """A minimal MDP peer: say READY, then send HEARTBEAT every interval, forever."""
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.DEALER)
        sock.routing_id = name.encode()
        cli.connect(sock, where)
        sock.send_multipart(protocol.from_worker(protocol.W_READY, b"heartbeat-demo"))
        cli.announce_ready("peer", where)
        while True:
            time.sleep(interval_s)  # the rhythm itself, not synchronisation
            sock.send_multipart(protocol.from_worker(protocol.W_HEARTBEAT))


def watch(sock: cli.Sock, peers: dict[bytes, Liveness], until: float) -> dict[bytes, float]:
    """Receive heartbeats until `until`; return the time each peer was first seen dead."""
    dead: dict[bytes, float] = {}
    while (now := time.monotonic()) < until:
        if sock.poll(20):
            sender, *frames = sock.recv_multipart()
            peers.setdefault(sender, Liveness(now))
            peers[sender].heard(time.monotonic(), is_heartbeat=frames[-1] == protocol.W_HEARTBEAT)
        for peer, liveness in peers.items():
            if peer not in dead and liveness.is_dead(time.monotonic()):
                dead[peer] = time.monotonic()
    return dead


def demo(freeze_after_s: float = 3.0, observe_s: float = 4.0) -> tuple[float | None, bool]:
    """Return (seconds from SIGSTOP to the verdict on the fast peer, slow peer wrongly dead?)."""
    with processes.Roles("cluster_patterns.heartbeat_demo") as roles, zmq.Context() as ctx:
        ctx.linger = 0
        sock = ctx.socket(zmq.ROUTER)
        where = cli.bind(sock, processes.ANY_LOCAL_PORT)
        fast = roles.spawn(
            "fast", "peer", "--endpoint", where, "--name", "fast", "--interval", str(OUR_INTERVAL_S)
        )
        roles.spawn("slow", "peer", "--endpoint", where, "--name", "slow", "--interval", "2.5")
        peers: dict[bytes, Liveness] = {}
        watch(sock, peers, time.monotonic() + freeze_after_s)
        fast_id = b"fast"
        for peer, liveness in peers.items():
            learned = f"{liveness.interval:.3f}s" if liveness.interval else "not yet"
            print(
                f"peer {peer.decode()}: interval {learned}, allowed {liveness.allowed_silence:.2f}s"
            )
        fast.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        print("fast peer frozen with SIGSTOP")
        # Long enough for the slow peer to miss a beat if it were judged by the fast one's rule,
        # and for the fast one's allowance to run out even if it was not learned yet.
        dead = watch(sock, peers, frozen_at + max(observe_s, peers[fast_id].allowed_silence + 1))
        fast.signal(signal.SIGCONT)
    detected = dead[fast_id] - frozen_at if fast_id in dead else None
    return detected, any(peer != fast_id for peer in dead)


def cmd_demo(args: argparse.Namespace) -> int:
    detected, false_positive = demo(args.freeze_after)
    print(f"fast peer declared dead {detected:.3f}s after SIGSTOP" if detected else "not detected")
    print(f"slow (2.5 s) peer wrongly declared dead: {false_positive}")
    ok = detected is not None and not false_positive
    return processes.verdict("heartbeat", ok, "frozen peer detected, slow peer spared")


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = cli.command_parser(__doc__)
    peer = cli.add_command(
        roles,
        "peer",
        lambda a: beat(a.endpoint, a.interval, a.name),
        "send heartbeats",
        endpoint="tcp://127.0.0.1:5555",
    )
    peer.add_argument("--interval", type=float, default=OUR_INTERVAL_S)
    peer.add_argument("--name", default="peer")
    demo_role = cli.add_command(roles, "demo", cmd_demo, "freeze a peer, time the detection")
    demo_role.add_argument("--freeze-after", type=float, default=3.0, help="seconds of learning")
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
