"""Heartbeats between real processes: a fast peer, a slow one, and what learning their rhythm buys.

Run `python -m cluster_patterns.heartbeat_demo demo`: two peers beat at 250 ms and 1 s; once
both rhythms are learned the fast one is frozen with SIGSTOP. Three judges watch the same
heartbeats side by side:

  * a fixed timeout short enough for the fast peer (3 of its beats) wrongly condemns the slow
    peer, whose ordinary gap is longer than that;
  * a fixed timeout long enough for the slow peer (3 of its beats) spares it, but is slow to
    notice the frozen fast peer (four times slower when both peers keep time exactly);
  * `Liveness` (heartbeat.py), which learns each peer's own interval, notices the frozen peer
    as fast as the short timeout and spares the slow one as the long timeout does.

Try `--freeze-after 0.2` to freeze the fast peer before it has been learned: the learned judge
then falls back on its conservative allowance.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Sequence

import zmq

from cluster_patterns import processes, protocol
from zcl import cli
from zcl.heartbeat import OUR_INTERVAL_S, Liveness


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


SLOW_INTERVAL_S = 1.0
LIVENESS = 3  # beats a peer may miss, for every judge
FIXED_SHORT_S = LIVENESS * OUR_INTERVAL_S  # a fixed timeout that suits the fast peer
FIXED_LONG_S = LIVENESS * SLOW_INTERVAL_S  # a fixed timeout that suits the slow peer


class Judges:
    """Three rules deciding, from the same heartbeats, when each peer is dead."""

    def __init__(self) -> None:
        self.learned: dict[bytes, Liveness] = {}
        self.last_heard: dict[bytes, float] = {}
        self.dead: dict[str, dict[bytes, float]] = {"learned": {}, "short": {}, "long": {}}

    def heard(self, peer: bytes, now: float, is_heartbeat: bool) -> None:
        self.learned.setdefault(peer, Liveness(now, liveness=LIVENESS)).heard(now, is_heartbeat)
        self.last_heard[peer] = now

    def judge(self, now: float) -> None:
        for peer, last in self.last_heard.items():
            silent = now - last
            verdicts = {
                "learned": self.learned[peer].is_dead(now),
                "short": silent > FIXED_SHORT_S,
                "long": silent > FIXED_LONG_S,
            }
            for judge, is_dead in verdicts.items():
                if is_dead:
                    self.dead[judge].setdefault(peer, now)


def watch(sock: cli.Sock, judges: Judges, until: float) -> None:
    """Receive heartbeats and judge the peers until `until`."""
    while time.monotonic() < until:
        if sock.poll(20):
            sender, *frames = sock.recv_multipart()
            judges.heard(sender, time.monotonic(), frames[-1] == protocol.W_HEARTBEAT)
        judges.judge(time.monotonic())


def demo(freeze_after_s: float = 3.5) -> dict[str, tuple[float | None, bool]]:
    """For each judge: (seconds from SIGSTOP to its verdict on the fast peer, slow peer
    wrongly condemned?)."""
    with processes.Roles("cluster_patterns.heartbeat_demo") as roles, zmq.Context() as ctx:
        ctx.linger = 0
        sock = ctx.socket(zmq.ROUTER)
        where = cli.bind(sock, processes.ANY_LOCAL_PORT)
        fast = roles.spawn(
            "fast", "peer", "--endpoint", where, "--name", "fast", "--interval", str(OUR_INTERVAL_S)
        )
        roles.spawn(
            "slow",
            "peer",
            "--endpoint",
            where,
            "--name",
            "slow",
            "--interval",
            str(SLOW_INTERVAL_S),
        )
        judges = Judges()
        watch(sock, judges, time.monotonic() + freeze_after_s)
        for peer, liveness in sorted(judges.learned.items()):
            learned = f"{liveness.interval:.3f} s" if liveness.interval else "not yet"
            allowed = liveness.allowed_silence
            print(f"peer {peer.decode()}: interval {learned}, allowed {allowed:.2f} s")
        fast.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        print("fast peer frozen with SIGSTOP")
        # Until the slowest rule could have noticed, plus a beat of the slow peer.
        allowance = judges.learned[b"fast"].allowed_silence
        watch(sock, judges, frozen_at + max(FIXED_LONG_S, allowance) + SLOW_INTERVAL_S)
        fast.signal(signal.SIGCONT)
    results = {}
    for judge, dead in judges.dead.items():
        detected = dead[b"fast"] - frozen_at if b"fast" in dead else None
        results[judge] = (detected, b"slow" in dead)
    return results


def cmd_demo(args: argparse.Namespace) -> int:
    results = demo(args.freeze_after)
    names = {
        "short": f"fixed {FIXED_SHORT_S:.2f} s",
        "long": f"fixed {FIXED_LONG_S:.2f} s",
        "learned": "learned rhythm",
    }
    for judge, (detected, condemned_slow) in results.items():
        seen = f"{detected:.2f} s after SIGSTOP" if detected is not None else "never"
        wrong = "WRONGLY condemned" if condemned_slow else "spared"
        print(f"  {names[judge]:15} frozen peer detected {seen}; slow peer {wrong}")
    learned, short, long = results["learned"], results["short"], results["long"]
    ok = (
        learned[0] is not None
        and not learned[1]
        and short[1]  # the short fixed timeout gets the slow peer wrong...
        and long[0] is not None
        and long[0] > learned[0]  # ...and the long one is slower to see the frozen one
    )
    return processes.verdict(
        "heartbeat",
        ok,
        "only the learned rhythm both detects the frozen peer fast and spares the slow one",
    )


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
    demo_role.add_argument("--freeze-after", type=float, default=3.5, help="seconds of learning")
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
