"""bind_connect: connect-before-bind, reconnect after a restart, and IMMEDIATE."""

from __future__ import annotations

from zmq_basics import bind_connect


def test_each_case() -> None:
    result = bind_connect.demo()
    assert result.connect_first_delivered
    assert result.replies_across_restart == [
        b"ack to the first server",
        b"ack to the second server",
    ]
    assert result.plain_send.startswith("accepted")
    assert result.immediate_send.startswith("EAGAIN")
