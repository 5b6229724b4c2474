"""A circuit breaker per node: stop waiting on a node that keeps failing, and try it again later.

Closed (normal): calls go through; `failure_threshold` transport failures in a row open it.
Open: calls fail at once with CircuitOpenError, for `cooldown_s` (doubling on each failed probe,
capped). Half-open: after the cooldown one call goes through as a probe; if it succeeds the
circuit closes, if it fails it opens again. Only transport failures count: a command that exits
non-zero proves the node is reachable.

The fallback executor (fallback.py) reads `state` to send a node's commands over SSH while its
ZeroMQ circuit is open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold, self.clock = failure_threshold, clock
        self.base_cooldown_s, self.max_cooldown_s = cooldown_s, max_cooldown_s
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.probing or self.clock() - self.opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open, only the first caller (the probe) may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False
        self.cooldown_s = self.base_cooldown_s

    def record_failure(self) -> None:
        if self.probing:  # the probe failed: wait longer before the next one
            self.cooldown_s = min(self.max_cooldown_s, self.cooldown_s * 2)
            self.opened_at, self.probing = self.clock(), False
            return
        self.failures += 1
        if self.opened_at is None and self.failures >= self.failure_threshold:
            self.opened_at = self.clock()

    def abandon_probe(self) -> None:
        """The probe was cancelled before it showed anything: let the next call probe."""
        self.probing = False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self.clock())
