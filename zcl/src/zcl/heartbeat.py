"""Heartbeats: learn each peer's rhythm, call it dead when its silence breaks that rhythm.

MDP leaves the heartbeat interval to agreement between peers, and in practice peers disagree:
our workers beat every 250 ms, a third-party worker may beat every 2.5 s. A fixed timeout is
either too slow for the first or too quick for the second. `Liveness` learns each peer's own
interval from the gaps between its heartbeats, and allows `liveness` intervals plus a margin
that grows with the jitter it has seen. Until a peer has shown three gaps it gets a
conservative allowance, so a slow peer is never condemned before it had the chance to beat.

`Backoff` spaces out reconnect attempts: doubling, capped, and randomised so that a hundred
workers that lost the same coordinator do not all come back in the same millisecond.

Both are state objects in the majortomo style: they hold no socket and are handed the time,
so they are tested with numbers and no clock. The course's heartbeat_demo.py puts
them to work between real processes.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

OUR_INTERVAL_S = 0.25  # what our workers and coordinator beat at
LEARNING_SAMPLES = 3  # heartbeat gaps seen before a rhythm is trusted
MIN_INTERVAL_S = 0.05  # shorter gaps between heartbeats are extra beats, not a rhythm
UNLEARNED_ALLOWANCE_S = 7.5  # before a peer's first beat: three of MDP's customary 2.5 s


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
