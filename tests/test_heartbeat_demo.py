"""heartbeat_demo between real processes: a fixed timeout condemns the slow peer or misses the
frozen one; the learned rhythm gets both right. (The rules alone: tests/unit/test_heartbeat.py.)"""

from __future__ import annotations

from cluster_patterns import heartbeat_demo


def test_demo_shows_what_a_fixed_timeout_gets_wrong_and_the_learned_rhythm_gets_right() -> None:
    results = heartbeat_demo.demo()
    learned_detected, learned_condemned_slow = results["learned"]
    assert learned_detected is not None
    assert not learned_condemned_slow
    assert results["short"][1], "a timeout short enough for the fast peer condemns the slow one"
    long_detected, long_condemned_slow = results["long"]
    assert not long_condemned_slow
    assert long_detected is not None and long_detected > learned_detected
