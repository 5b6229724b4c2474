"""heartbeat: learned rhythms, no false verdicts for slow peers, capped randomised back-off."""

from __future__ import annotations

import pytest

from zcl import heartbeat
from zcl.heartbeat import Backoff, Liveness


def beat(liveness: Liveness, start: float, interval: float, count: int) -> float:
    t = start
    for _ in range(count):
        t += interval
        liveness.heard(t, is_heartbeat=True)
    return t


def test_fast_peer_is_caught_within_a_second() -> None:
    peer = Liveness(0.0)
    last = beat(peer, 0.0, 0.25, 20)
    assert peer.interval == pytest.approx(0.25)
    assert not peer.is_dead(last + 0.7)
    assert peer.is_dead(last + 0.8)


def test_slow_peer_is_spared() -> None:
    peer = Liveness(0.0)
    last = beat(peer, 0.0, 2.5, 5)
    assert not peer.is_dead(last + 2.6)  # a fixed 250 ms rule would have killed it long ago
    assert peer.is_dead(last + 8.0)


def test_unlearned_peer_gets_the_conservative_allowance() -> None:
    peer = Liveness(0.0)
    peer.heard(0.1)  # a READY or a reply, not a heartbeat: no rhythm learned
    assert peer.interval is None
    assert not peer.is_dead(0.1 + heartbeat.UNLEARNED_ALLOWANCE_S - 0.1)
    assert peer.is_dead(0.1 + heartbeat.UNLEARNED_ALLOWANCE_S + 0.1)


def test_busy_traffic_does_not_shrink_the_learned_interval() -> None:
    peer = Liveness(0.0)
    last = beat(peer, 0.0, 0.25, 8)
    for n in range(100):  # replies every millisecond
        peer.heard(last + n / 1000)
    assert peer.interval == pytest.approx(0.25)


def test_jitter_widens_the_margin() -> None:
    steady, jittery = Liveness(0.0), Liveness(0.0)
    beat(steady, 0.0, 0.25, 20)
    t = 0.0
    for n in range(20):
        t += 0.15 if n % 2 else 0.35
        jittery.heard(t, is_heartbeat=True)
    assert jittery.allowed_silence > steady.allowed_silence


def test_one_long_gap_counts_as_four_intervals_at_most() -> None:
    peer = Liveness(0.0)
    last = beat(peer, 0.0, 0.25, 10)
    peer.heard(last + 60, is_heartbeat=True)
    assert peer.interval is not None and peer.interval < 0.25 * 2


def test_backoff_doubles_is_capped_and_randomised() -> None:
    low, high = Backoff(0.1, 1.0, rand=lambda: 0.0), Backoff(0.1, 1.0, rand=lambda: 1.0)
    assert [round(low.next_delay(), 3) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [round(high.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    low.reset()
    assert low.next_delay() == pytest.approx(0.05)


def test_an_extra_beat_teaches_nothing() -> None:
    peer = Liveness(0.0)
    last = beat(peer, 0.0, 0.25, 8)
    peer.heard(last + 0.01, is_heartbeat=True)  # the beat a worker adds when it takes a task
    peer.heard(last + 0.25, is_heartbeat=True)  # the regular one, still 0.25 after the last
    assert peer.interval == pytest.approx(0.25)
