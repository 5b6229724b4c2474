"""The circuit breaker's states, driven by a fake clock."""

from __future__ import annotations

from zcl.circuit_breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> State:
    return breaker.state  # read through a call: mypy would narrow the property between reads


def test_closed_open_half_open_and_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=2, max_cooldown_s=5, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert state(breaker) == "closed" and breaker.allow()
    breaker.record_failure()
    assert state(breaker) == "open" and not breaker.allow()
    assert breaker.retry_in() == 2
    clock.now = 2.0
    assert state(breaker) == "half-open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still fails fast
    breaker.record_failure()  # the probe failed: twice the wait
    assert state(breaker) == "open" and breaker.retry_in() == 4
    clock.now = 6.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.retry_in() == 5  # capped
    clock.now = 11.0
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) == "closed" and breaker.failures == 0 and breaker.cooldown_s == 2


def test_a_success_resets_the_count_of_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert state(breaker) == "closed"


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.allow() and not breaker.allow()
    breaker.abandon_probe()
    assert breaker.allow()
