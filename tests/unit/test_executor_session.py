"""The ZeroMQ executor's rules, driven with replies built by hand and a number for the time:
no socket, no agent, no clock (zcl/executor_session.py)."""

from __future__ import annotations

import pytest

from zcl import agent_wire as wire
from zcl.executor_session import (
    STREAM_WINDOW,
    Answered,
    Draining,
    ExecutorSession,
    LinkFailed,
    Lost,
    Output,
    Ping,
)

pytestmark = pytest.mark.timeout(10)
FIRST, SECOND = b"incarnation-1", b"incarnation-2"


def reply(
    request_id: bytes,
    kind: bytes,
    body: dict[str, object] | None = None,
    *,
    incarnation: bytes = FIRST,
    frames: tuple[bytes, ...] = (),
) -> wire.Reply:
    payload = [] if body is None else [wire.encode_body(body)]
    return wire.parse_reply([wire.VERSION, request_id, kind, incarnation, *payload, *frames])


def session(now: float = 0.0) -> ExecutorSession:
    return ExecutorSession(now, silence_s=2.0, endpoint="tcp://n1:5560")


def test_a_result_answers_its_call_and_output_goes_to_its_stream() -> None:
    s = session()
    done = reply(b"r1", wire.DONE, {"exit_status": 0})
    assert s.receive(done, 1.0) == [Answered(b"r1", done)]
    out = wire.parse_reply([wire.VERSION, b"r2", wire.OUT, FIRST, wire.STDERR, b"oops", b"rcpt"])
    assert s.receive(out, 1.1) == [Output(b"r2", "stderr", b"oops")]


def test_another_incarnation_means_the_agent_restarted() -> None:
    s = session()
    s.receive(reply(b"r1", wire.PONG, {}), 1.0)
    [failed] = s.receive(reply(b"r2", wire.DONE, {}, incarnation=SECOND), 2.0)
    assert isinstance(failed, LinkFailed) and "restarted" in failed.reason
    s.reset(3.0)  # the shell replaced the socket: the next agent is new to us
    assert s.incarnation is None and s.agent_limits is None
    assert isinstance(s.receive(reply(b"r3", wire.DONE, {}, incarnation=SECOND), 4.0)[0], Answered)


def test_a_drain_notice_is_news_of_the_link_and_a_refusal_is_also_an_answer() -> None:
    s = session()
    notice = reply(wire.DRAIN_ID, wire.ERROR, {"code": "shutting-down", "reason": "stop"})
    assert s.receive(notice, 1.0) == [Draining()]
    refused = reply(b"r1", wire.ERROR, {"code": "shutting-down", "reason": "stop"})
    assert s.receive(refused, 1.1) == [Draining(), Answered(b"r1", refused)]


@pytest.mark.parametrize(("started", "said"), [(True, True), (False, False), (None, None)])
def test_a_revoked_key_fails_the_link_saying_whether_the_command_had_begun(
    started: bool | None, said: bool | None
) -> None:
    body: dict[str, object] = {"code": "key-refused", "reason": "revoked"}
    if started is not None:
        body["started"] = started
    [failed] = session().receive(reply(b"r1", wire.ERROR, body), 1.0)
    assert failed == LinkFailed(
        "the agent refused our key (revoked from its authorized_keys)", b"r1", said
    )


def test_a_heartbeat_pong_names_the_calls_the_agent_lost_and_teaches_its_limits() -> None:
    s = session()
    pong = reply(
        wire.HEARTBEAT_ID, wire.PONG, {"unknown": [b"r2", 7], "limits": {"x": 5, "y": "z"}}
    )
    assert s.receive(pong, 1.0) == [Lost((b"r2",))]
    assert s.agent_limits == {"x": 5}
    assert s.receive(reply(wire.HEARTBEAT_ID, wire.PONG, {"unknown": []}), 1.2) == []


def test_silence_past_the_allowance_fails_the_link_only_while_calls_wait() -> None:
    s = session(now=0.0)
    s.started_waiting(10.0)  # idle until now: the silence clock starts here
    assert s.tick(11.0, [b"r1", b"r2"]) == Ping((b"r1", b"r2"))
    assert s.tick(13.0, []) is None  # nobody waits: nothing to judge
    failed = s.tick(12.5, [b"r1"])
    assert isinstance(failed, LinkFailed) and "tcp://n1:5560 for 2.5 s" in failed.reason
    s.receive(reply(b"r1", wire.PONG, {}), 12.6)  # heard from: alive again
    assert s.tick(13.0, [b"r1"]) == Ping((b"r1",))


def test_a_ping_asks_about_the_oldest_it_may() -> None:
    waiting = [b"%d" % n for n in range(wire.MAX_PING_IDS + 5)]
    ping = session().tick(0.5, waiting)
    assert ping == Ping(tuple(waiting[: wire.MAX_PING_IDS]))


def test_a_stream_is_credited_a_quarter_window_at_a_time_and_never_loses_credit() -> None:
    s = session()
    quarter = STREAM_WINDOW // 4
    assert s.consumed(b"r1", quarter - 1) is None
    credit = s.consumed(b"r1", 1)
    assert credit == wire.CreditMessage(b"r1", quarter)
    # The credit could not go (a full queue): it grows, and goes whole next time.
    assert s.consumed(b"r1", 10) == wire.CreditMessage(b"r1", quarter + 10)
    s.credited(b"r1")
    assert s.consumed(b"r1", 10) is None


def test_a_malformed_error_body_is_an_answer_for_the_call_to_report() -> None:
    broken = wire.parse_reply([wire.VERSION, b"r1", wire.ERROR, FIRST, b"\xc1not msgpack"])
    assert session().receive(broken, 1.0) == [Answered(b"r1", broken)]


def test_a_pong_teaches_every_limit_and_a_probe_teaches_none() -> None:
    """The agent's --max-kill-grace is a float: a controller that kept only whole numbers
    waited out its own default grace instead of the agent's."""
    s = session()
    limits = {"max_kill_grace_s": 2.5, "max_concurrent": 4, "bogus": "x"}
    s.receive(reply(b"p1", wire.PONG, {"limits": limits}), 1.0)
    assert s.agent_limits == {"max_kill_grace_s": 2.5, "max_concurrent": 4}
    probe = wire.PongReply().body()  # what a silent controller's connection is tested with
    assert s.receive(reply(wire.HEARTBEAT_ID, wire.PONG, probe), 2.0) == []
    assert s.agent_limits == {"max_kill_grace_s": 2.5, "max_concurrent": 4}


def test_output_that_cannot_be_placed_is_not_delivered() -> None:
    s = session()
    odd = wire.parse_reply([wire.VERSION, b"r1", wire.OUT, FIRST, b"9", b"data", b"rcpt"])
    assert s.receive(odd, 1.0) == []


def test_after_a_drain_notice_only_what_finishes_work_under_way_still_goes() -> None:
    s = session()
    assert s.may_start(wire.RUN, {}, draining=False)
    assert not s.may_start(wire.RUN, {}, draining=True)  # the fallback may run it instead
    assert not s.may_start(wire.PUT, {"path": "/x", "size": 9}, draining=True)
    assert not s.may_start(wire.GET, {"path": "/x", "offset": 0}, draining=True)
    assert s.may_start(wire.GET, {"path": "/x", "offset": 4096}, draining=True)
    assert s.may_start(wire.WRITE, {}, draining=True)
    assert s.may_start(wire.PING, {}, draining=True)  # how a caller sees the drain
