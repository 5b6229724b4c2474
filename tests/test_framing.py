"""framing: atomic multipart delivery and the envelopes ROUTER and REQ build."""

from __future__ import annotations

from zmq_basics import framing


def test_frames_are_as_the_lesson_describes() -> None:
    result = framing.demo()
    assert not result.arrived_early
    assert result.multipart == [b"part 1", b"part 2", b"part 3"]
    identity, delimiter, body = result.req_router
    assert identity and delimiter == b"" and body == b"hello"
    assert result.req_reply == [b"world"]
    assert result.dealer_router == [b"alice", b"no", b"delimiter"]
    assert result.req_rep == [b"hello"]
