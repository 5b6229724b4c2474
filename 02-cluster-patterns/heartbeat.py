"""Heartbeats: learn each peer's rhythm, call it dead when its silence breaks that rhythm.

MDP leaves the heartbeat interval to agreement between peers, and in practice peers disagree:
our workers beat every 250 ms, a third-party worker may beat every 2.5 s. A fixed timeout is
either too slow for the first or too quick for the second. `Liveness` learns each peer's own
interval from the gaps between its heartbeats, and allows `liveness` intervals plus a margin
that grows with the jitter it has seen. Until a peer has shown three gaps it gets a
conservative allowance, so a slow peer is never condemned before it had the chance to beat.

`Backoff` spaces out reconnect attempts: doubling, capped, and randomised so that a hundred
workers that lost the same coordinator do not all come back in the same millisecond.

Run `python 02-cluster-patterns/heartbeat.py demo`: two peers beat at 250 ms and 2.5 s; the fast
one is frozen with SIGSTOP and the time to detect it is printed; the slow one is never called
dead. Try `--freeze-after 0.2` to freeze the fast peer before it has been learned.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import statistics
import time
from collections.abc import Callable, Sequence

import zmq

from cluster_patterns import protocol
from zmq_basics import lesson

OUR_INTERVAL_S = 0.25  # what our workers and coordinator beat at
LEARNING_SAMPLES = 3  # heartbeat gaps seen before a rhythm is trusted
MIN_INTERVAL_S = 0.05  # shorter gaps between heartbeats are extra beats, not a rhythm
UNLEARNED_ALLOWANCE_S = 7.5  # before a peer's first beat: three of MDP's customary 2.5 s
log = logging.getLogger("heartbeat")


class Liveness:
    """A peer's learned heartbeat rhythm and the deadline its silence must not pass."""

    def __init__(
        self,
        now: float,
        liveness: float = 3.0,
        floor_s: float = 0.5,
        unlearned_allowance_s: float = UNLEARNED_ALLOWANCE_S,
        smoothing: float = 0.25,
    ) -> None:
        self.liveness, self.floor_s, self.smoothing = liveness, floor_s, smoothing
        self.last_heard = self.last_beat = now
        self.first_gaps: list[float] = []
        self.interval: float | None = None  # trusted once LEARNING_SAMPLES gaps were seen
        self.jitter = 0.0
        self.unlearned_allowance_s = unlearned_allowance_s

    def heard(self, now: float, is_heartbeat: bool = False) -> None:
        """Any message proves the peer alive; the gaps between its heartbeats show its rhythm.

        Our peers beat on a fixed schedule whatever else they send. The first few gaps are
        taken by their median, so one odd gap (a beat sent right after READY) cannot set the
        rhythm. A gap much shorter than the rhythm (an extra beat) teaches nothing. A peer that
        beats only when otherwise silent, as the spec allows, shows longer gaps while busy:
        that errs on the patient side, and one long gap counts as four intervals at most.
        """
        self.last_heard = now
        if not is_heartbeat:
            return
        gap = now - self.last_beat
        if gap < max(MIN_INTERVAL_S, (self.interval or 0) / 2):
            return
        self.last_beat = now
        if self.interval is None:
            self.first_gaps.append(gap)
            if len(self.first_gaps) == LEARNING_SAMPLES:
                self.interval = statistics.median(self.first_gaps)
                self.jitter = statistics.fmean(abs(g - self.interval) for g in self.first_gaps)
            return
        gap = min(gap, 4 * self.interval)
        self.jitter += self.smoothing * (abs(gap - self.interval) - self.jitter)
        self.interval += self.smoothing * (gap - self.interval)

    def expect_from(self, now: float) -> None:
        """Start the silence clock now: a peer that had no reason to speak was not silent.

        For peers that answer only while asked (a node agent answers pings only while a
        controller waits on it), call this when the asking starts again.
        """
        self.last_heard = self.last_beat = max(self.last_heard, now)

    @property
    def allowed_silence(self) -> float:
        if self.interval is None:
            return self.unlearned_allowance_s
        return max(self.floor_s, self.liveness * self.interval + 4 * self.jitter)

    def deadline(self) -> float:
        return self.last_heard + self.allowed_silence

    def is_dead(self, now: float) -> bool:
        return now > self.deadline()


class Backoff:
    """Reconnect delays that double from `initial_s` up to `cap_s`, each randomised by up to 50%."""

    def __init__(
        self, initial_s: float = 0.1, cap_s: float = 5.0, rand: Callable[[], float] = random.random
    ) -> None:
        self.initial_s, self.cap_s, self.rand = initial_s, cap_s, rand
        self.attempts = 0

    def next_delay(self) -> float:
        base = min(self.cap_s, self.initial_s * 2**self.attempts)
        self.attempts += 1
        return float(base / 2 + self.rand() * base / 2)  # never zero, never above the cap

    def reset(self) -> None:
        self.attempts = 0


def beat(where: str, interval_s: float, name: str) -> None:
    """A minimal MDP peer: say READY, then send HEARTBEAT every interval, forever."""
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.DEALER)
        sock.routing_id = name.encode()
        lesson.connect(sock, where)
        sock.send_multipart(protocol.from_worker(protocol.W_READY, b"heartbeat-demo"))
        lesson.announce_ready("peer", where)
        while True:
            time.sleep(interval_s)  # the rhythm itself, not synchronisation
            sock.send_multipart(protocol.from_worker(protocol.W_HEARTBEAT))


def watch(sock: lesson.Sock, peers: dict[bytes, Liveness], until: float) -> dict[bytes, float]:
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
    with lesson.Roles("cluster_patterns.heartbeat") as roles, zmq.Context() as ctx:
        ctx.linger = 0
        sock = ctx.socket(zmq.ROUTER)
        where = lesson.bind(sock, lesson.ANY_LOCAL_PORT)
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
    return lesson.verdict("heartbeat", ok, "frozen peer detected, slow peer spared")


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    peer = lesson.add_role(
        roles,
        "peer",
        lambda a: beat(a.endpoint, a.interval, a.name),
        "send heartbeats",
        endpoint="tcp://127.0.0.1:5555",
    )
    peer.add_argument("--interval", type=float, default=OUR_INTERVAL_S)
    peer.add_argument("--name", default="peer")
    demo_role = lesson.add_role(roles, "demo", cmd_demo, "freeze a peer, time the detection")
    demo_role.add_argument("--freeze-after", type=float, default=3.0, help="seconds of learning")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
