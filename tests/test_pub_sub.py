"""pub_sub: slow-joiner loss and its fix, prefix filtering, and drops at the HWM."""

from __future__ import annotations

from zmq_basics import pub_sub


def test_demo_shows_each_behaviour() -> None:
    result = pub_sub.demo()
    assert result.naive_received < pub_sub.BURST, "a plain PUB loses what it sends before joining"
    assert result.synced_received == pub_sub.BURST, "waiting for the subscription loses nothing"
    assert result.topics_seen[b"node.1"] == {b"node.1.status", b"node.10.status"}
    assert result.topics_seen[b"node."] == {b"node.1.status", b"node.2.status", b"node.10.status"}
    assert result.topics_seen[b""] == set(pub_sub.TOPICS)
    assert 0 < result.slow_received < result.slow_sent


def test_expected_topics_is_prefix_matching() -> None:
    assert pub_sub.expected_topics(b"job") == {b"job.done"}
    assert pub_sub.expected_topics(b"nothing") == set()
