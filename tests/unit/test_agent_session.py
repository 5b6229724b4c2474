"""The node agent's rules, driven with frames built by hand and numbers for the time: no
socket, no process, no clock (zcl/agent/agent_session.py). The system tests one folder up hold
the same rules against a real agent; these say what each rule is, one at a time."""

from __future__ import annotations

from typing import Any

import pytest

from zcl import agent_wire as wire
from zcl.agent import agent_session, spawn  # spawn only for its constant: nothing runs
from zcl.agent.agent_session import (
    DRAIN_ACK_S,
    IDLE_FORGET_S,
    MIN_STREAM_WINDOW,
    TRANSFER_IDLE_S,
    Action,
    AgentSession,
    Discard,
    Kill,
    Pause,
    Probe,
    Resume,
    Send,
    SessionLimits,
    Stop,
)
from zcl.agent.reply_ledger import ENTRY_BYTES
from zcl.errors import WireError
from zcl.run_options import MAX_KILL_GRACE_S, RunOptions

pytestmark = pytest.mark.timeout(10)
A, B = b"peer-a", b"peer-b"
ALL = frozenset({wire.RUN, wire.CANCEL, wire.PUT, wire.GET, wire.SYSINFO, wire.PING})


def session(**limits: Any) -> AgentSession:
    settings: dict[str, Any] = {"operations": ALL, "controller_timeout_s": 5.0, **limits}
    return AgentSession(SessionLimits(**settings), b"incarn-1")


def request(
    s: AgentSession,
    rid: bytes,
    operation: bytes = wire.RUN,
    body: dict[str, Any] | None = None,
    *,
    peer: bytes = A,
    now: float = 0.0,
    user_id: str | None = None,
) -> wire.Request | None:
    frames = [peer, *wire.request(rid, operation, body or {})]
    return s.receive(frames, user_id, now)


def sent(actions: list[Action]) -> list[wire.Reply]:
    return [wire.parse_reply(a.frames[1:]) for a in actions if isinstance(a, Send)]


def errors(actions: list[Action]) -> list[tuple[bytes, str]]:
    return [
        (r.request_id, wire.ErrorReply.read(r.body()).code)
        for r in sent(actions)
        if r.kind == wire.ERROR
    ]


def start(s: AgentSession, rid: bytes, *, peer: bytes = A, stream: bool = False) -> wire.Request:
    req = request(s, rid, peer=peer)
    assert req is not None
    s.command_started((peer, rid), stream=stream, window=MIN_STREAM_WINDOW if stream else None)
    return req


def test_a_malformed_message_is_dropped_and_counted_never_answered() -> None:
    s = session()
    assert s.receive([A, b"ZCA9", b"r1", wire.RUN, wire.encode_body({})], None, 0.0) is None
    assert s.receive([A, wire.VERSION, b"r1", wire.RUN, b"\xc1"], None, 0.0) is None
    assert s.take() == []
    assert s.counters["dropped.bad-version"] == 1 and s.counters["dropped.bad-body"] == 1


def test_the_allow_list_with_its_implied_operations_and_receipts_always() -> None:
    s = session(operations=frozenset({wire.RUN, wire.PING}))
    assert request(s, b"r1", wire.PUT) is None
    assert errors(s.take()) == [(b"r1", wire.ErrorCode.NOT_ALLOWED)]
    assert request(s, b"r2", wire.CREDIT) is not None  # comes with run
    assert request(s, b"r3", wire.READ) is not None  # returning receipts is always allowed
    assert request(s, b"r4", wire.WRITE) is None  # comes with put, which is not allowed
    assert s.take() and s.counters["refused.not-allowed"] == 2


def test_every_operation_at_work_counts_against_the_limit() -> None:
    s = session(max_concurrent=3)
    start(s, b"c1")
    s.file_op_started((A, b"f1"))
    s.transfer_opened((A, b"handle"), 10, 0.0)
    req = request(s, b"c2")
    assert req is not None and not s.admit(req)
    assert errors(s.take()) == [(b"c2", wire.ErrorCode.BUSY)]
    s.file_op_ended((A, b"f1"), 1.0)
    assert s.admit(req)


def test_a_run_is_held_to_the_agents_limits() -> None:
    s = session(max_output_bytes=1000, max_kill_grace_s=2.0)

    def run(rid: bytes, **fields: Any) -> int | None:
        req = request(s, rid)
        assert req is not None
        return s.accept_run(req, wire.RunMessage.read({"command": "true", **fields}))

    assert run(b"r1") == 1000
    assert run(b"r2", max_output_bytes=10) == 10  # less may be asked
    assert run(b"r3", max_output_bytes=1001) is None
    assert run(b"r4", stream=True, window=MIN_STREAM_WINDOW - 1) is None
    start(s, b"r5")
    assert run(b"r5") is None  # the same id while it runs
    assert errors(s.take()) == [
        (b"r3", wire.ErrorCode.OVER_LIMIT),
        (b"r4", wire.ErrorCode.BAD_FIELD),
        (b"r5", wire.ErrorCode.DUPLICATE_ID),
    ]
    assert s.kill_grace(30.0) == 2.0 and s.kill_grace(1.0) == 1.0 and s.kill_grace(None) is None
    assert s.counters["kill-grace.capped"] == 1


def test_a_drain_tells_each_controller_once_refuses_new_work_and_ends_when_all_is_done() -> None:
    s = session()
    start(s, b"c1")
    request(s, b"p1", wire.PING, peer=B)
    s.take()
    assert s.start_drain(10.0) and not s.start_drain(11.0)
    notices = s.take()
    assert sorted(a.peer for a in notices if isinstance(a, Send) and a.notice) == [A, B]
    req = request(s, b"c2", now=10.5)
    assert req is not None and not s.admit(req)
    assert errors(s.take()) == [(b"c2", wire.ErrorCode.SHUTTING_DOWN)]  # no second notice
    get = request(s, b"g1", wire.GET, now=10.5)
    assert get is not None and s.admit(get, new=False)  # a get under way is finished
    s.command_ended((A, b"c1"))
    s.check_drained(10.6)
    request(s, wire.DRAIN_ID, wire.PING, now=10.7)  # A promises to start nothing more
    assert Stop() not in s.take()  # B has not answered yet
    s.tick(10.0 + DRAIN_ACK_S + 0.1)
    assert Stop() in s.take()  # nor will it: the agent does not wait for ever


def test_a_drain_that_runs_out_of_time_kills_what_still_runs() -> None:
    s = session(drain_timeout_s=30.0)
    start(s, b"c1")
    s.transfer_opened((A, b"h"), 10, 0.0)
    s.start_drain(0.0)
    s.take()
    request(s, b"p", wire.PING, now=29.0)  # the controller is alive: only the drain kills
    s.tick(29.0)
    assert not [a for a in s.take() if isinstance(a, Kill | Discard)]
    s.tick(30.5)
    actions = s.take()
    assert Kill((A, b"c1")) in actions and Discard((A, b"h")) in actions


def test_a_silent_controller_has_its_commands_killed_and_an_idle_one_is_forgotten() -> None:
    s = session(controller_timeout_s=5.0)
    start(s, b"c1")
    request(s, b"p", wire.PING, peer=B)
    s.take()
    s.tick(7.0)
    assert s.take() == []  # within its allowance
    s.tick(8.0)
    assert s.take() == [Kill((A, b"c1"))]
    assert s.counters["controller-lost"] == 1
    s.tick(IDLE_FORGET_S + 1)
    assert B not in s.controllers and A in s.controllers  # A's command has not ended yet


def test_a_revoked_key_is_refused_its_commands_killed_at_once_and_its_results_withheld() -> None:
    allowed = {"key-a", "key-b"}
    s = AgentSession(SessionLimits(ALL), b"incarn-1", allows=allowed.__contains__)
    running = start_as(s, b"c1", "key-a")
    start_as(s, b"c2", "key-b", peer=B)
    allowed.discard("key-a")
    s.keys_changed()
    assert s.take() == [Kill((A, b"c1"), grace=False)]
    s.command_ended((A, b"c1"))
    s.finish(running, {"exit_status": -9}, (b"", b""), 1.0)
    [killed] = sent(s.take())
    assert wire.ErrorReply.read(killed.body()) == wire.ErrorReply(
        wire.ErrorCode.KEY_REFUSED, "this controller's key is no longer authorized", True
    )
    assert request(s, b"c3", user_id="key-a") is None
    [refused] = sent(s.take())
    assert wire.ErrorReply.read(refused.body()).started is False  # never ran: safe elsewhere
    assert request(s, b"c4", peer=B, user_id="key-b") is not None


def start_as(s: AgentSession, rid: bytes, key: str, *, peer: bytes = A) -> wire.Request:
    req = request(s, rid, peer=peer, user_id=key)
    assert req is not None
    s.command_started((peer, rid), stream=False)
    return req


def test_results_past_the_unread_budget_wait_until_their_receipts_come_back() -> None:
    s = session(max_unread_bytes=100 + 2 * ENTRY_BYTES)
    first, second = (request(s, rid, wire.GET) for rid in (b"g1", b"g2"))
    assert first is not None and second is not None
    s.finish(first, {"data": b"x" * 80}, (), 1.0)
    [one] = sent(s.take())  # owed nothing: one reply may always go
    s.finish(second, {"data": b"y" * 80}, (), 1.0)
    assert sent(s.take()) == [] and s.held_count == 1 and s.at_work() == 1
    receipt = one.receipt_to_return()
    assert receipt is not None
    request(s, b"rd", wire.READ, {"read": [b"forged00"]}, now=2.0)
    assert sent(s.take()) == []  # a made-up receipt frees nothing
    request(s, b"rd", wire.READ, {"read": [receipt]}, now=2.0)
    [two] = sent(s.take())
    assert two.request_id == b"g2" and s.held_count == 0


def test_a_stream_pauses_at_its_window_and_resumes_on_credit() -> None:
    s = session()
    req = start(s, b"s1", stream=True)
    assert s.take() == []  # the budget has room: it flows
    s.output((A, b"s1"), wire.STDOUT, b"z" * MIN_STREAM_WINDOW)
    actions = s.take()
    [chunk] = sent(actions)
    assert wire.OutReply.read(chunk).data == b"z" * MIN_STREAM_WINDOW
    assert actions[-1] == Pause((A, b"s1"))
    s.credit(req, wire.CreditMessage(b"s1", MIN_STREAM_WINDOW // 2))
    assert s.take() == [Resume((A, b"s1"))]
    s.credit(req, wire.CreditMessage(b"s1", 1))
    assert s.take() == []  # flowing already


def test_a_stream_pauses_while_a_result_of_its_key_waits() -> None:
    s = session(max_unread_bytes=10 * 1024 * 1024)
    start(s, b"s1", stream=True)
    get = request(s, b"g1", wire.GET)
    assert get is not None
    s.output((A, b"s1"), wire.STDOUT, b"o" * 1024)  # owes a little
    s.take()
    s.finish(get, {"data": b"d" * (10 * 1024 * 1024)}, (), 1.0)  # would go past the budget
    assert Pause((A, b"s1")) in s.take() and s.held_count == 1


def test_pieces_come_in_order_to_the_size_announced_and_a_stalled_put_is_discarded() -> None:
    s = session()
    key = (A, b"h1")
    s.transfer_opened(key, 10, 0.0)

    def piece(offset: int, data: bytes, last: bool = False, now: float = 1.0) -> bool:
        req = request(s, b"w", wire.WRITE, now=now)
        assert req is not None
        return s.accept_piece(req, wire.WriteMessage(b"h1", offset, data, last), now)

    assert not piece(4, b"late")
    assert piece(0, b"1234")
    assert not piece(4, b"5678")  # the first is still being written
    s.piece_written(key, last=False)
    assert not piece(4, b"5678", last=True)  # 8 of 10 bytes is not the end
    assert not piece(4, b"5678901")  # past the size announced
    unknown = request(s, b"w", wire.WRITE)
    assert unknown is not None and not s.accept_piece(unknown, wire.WriteMessage(b"zz", 0, b""), 1)
    codes = [code for _, code in errors(s.take())]
    assert codes == [wire.ErrorCode.BAD_PIECE] * 4 + [wire.ErrorCode.UNKNOWN_TRANSFER]
    request(s, b"p", wire.PING, now=1.0 + TRANSFER_IDLE_S)
    s.tick(1.0 + TRANSFER_IDLE_S + 0.5)
    assert Discard(key) in s.take() and key not in s.transfers


def test_a_put_over_the_file_limit_is_refused_before_a_byte_is_written() -> None:
    s = session(max_file_bytes=100)
    req = request(s, b"p1", wire.PUT)
    assert req is not None
    assert s.within_file_limit(req, 100) and not s.within_file_limit(req, 101)
    assert errors(s.take()) == [(b"p1", wire.ErrorCode.TOO_LARGE)]


def test_a_silent_connection_that_owes_is_probed_once_per_timeout_and_freed_when_gone() -> None:
    s = session(controller_timeout_s=5.0, max_unread_bytes=100 + 2 * ENTRY_BYTES)
    first, second = (request(s, rid, wire.GET) for rid in (b"g1", b"g2"))
    assert first is not None and second is not None
    s.finish(first, {"data": b"x" * 80}, (), 0.0)
    s.finish(second, {"data": b"y" * 80}, (), 0.0)
    s.take()
    s.tick(4.0)
    assert s.take() == []  # heard from recently
    s.tick(6.0)
    [probe] = s.take()
    assert isinstance(probe, Probe) and probe.peer == A
    pong = wire.PongReply.read(wire.parse_reply(probe.frames[1:]).body())
    assert pong.limits is None  # a probe teaches a controller nothing
    s.tick(7.0)
    assert s.take() == []  # once per timeout
    s.connection_gone(A, 7.0)
    [freed] = sent(s.take())
    assert freed.request_id == b"g2" and s.counters["unread.forgotten"] == 1


def test_an_undelivered_reply_returns_its_charge() -> None:
    s = session()
    get = request(s, b"g1", wire.GET)
    assert get is not None
    s.finish(get, {"data": b"x" * 1000}, (), 0.0)
    [reply] = s.take()
    assert isinstance(reply, Send) and s.ledger.owed_by(A) > 1000
    s.undelivered(reply, 0.0)
    assert s.ledger.owed_by(A) == 0


def test_a_pong_names_the_ids_it_does_not_know_and_the_limits() -> None:
    s = session(max_concurrent=7)
    start(s, b"c1")
    ping = request(s, b"hb", wire.PING)
    assert ping is not None
    s.pong(ping, [b"c1", b"gone"], {"commands": 1})
    [answer] = sent(s.take())
    pong = wire.PongReply.read(answer.body())
    assert pong.unknown == (b"gone",) and pong.running == 1 and pong.counters == {"commands": 1}
    assert pong.limits is not None and pong.limits["max_concurrent"] == 7


def test_cancel_reaches_only_the_connection_that_started_the_command() -> None:
    s = session()
    start(s, b"c1")
    other = request(s, b"x", wire.CANCEL, peer=B)
    mine = request(s, b"y", wire.CANCEL)
    assert other is not None and mine is not None
    s.cancel(other, b"c1")
    assert s.take() == []
    s.cancel(mine, b"c1")
    assert s.take() == [Kill((A, b"c1"))]


def test_the_reply_types_read_what_they_write() -> None:
    done = wire.RunDone(3, 0.5, True, 1024, False, True)
    assert wire.RunDone.read(done.body()) == done
    with pytest.raises(WireError):
        wire.RunDone.read({"exit_status": True})
    error = wire.ErrorReply(wire.ErrorCode.BUSY, "full")
    assert wire.ErrorReply.read(error.body()) == error and "started" not in error.body()
    options = RunOptions(timeout_s=1.0)
    assert wire.RunMessage.read(wire.RunMessage("x", options).body()).options == options


def test_a_refused_chunk_is_decided_again_without_its_charge() -> None:
    """Two connections of one key: a chunk to the one that is gone paused the other, whose
    stream must flow again once that chunk's charge is returned (it was left paused)."""
    s = AgentSession(SessionLimits(ALL, max_unread_bytes=1024 * 1024), b"incarn-1")
    for peer in (A, B):
        assert request(s, b"hb", wire.PING, peer=peer, user_id="the-key") is not None
    start(s, b"s1", peer=A, stream=True)
    start(s, b"s2", peer=B, stream=True)
    s.take()
    s.output((A, b"s1"), wire.STDOUT, b"x" * 200_000)
    actions = s.take()
    assert Pause((B, b"s2")) in actions  # the key's budget has no room for a whole read more
    [gone] = [a for a in actions if isinstance(a, Send)]
    s.undelivered(gone, 1.0)
    assert Resume((B, b"s2")) in s.take() and s.ledger.owed_by(b"the-key") == 0


def test_a_drain_ends_only_once_the_last_result_has_gone() -> None:
    s = session(max_unread_bytes=100 + 2 * ENTRY_BYTES)
    get = request(s, b"g1", wire.GET)
    run = start(s, b"c1")
    assert get is not None
    s.finish(get, {"data": b"x" * 80}, (), 0.0)
    [first] = sent(s.take())
    s.start_drain(1.0)
    request(s, wire.DRAIN_ID, wire.PING, now=1.1)  # the controller answered the notice
    s.take()
    s.command_ended((A, b"c1"))
    s.finish(run, {"exit_status": 0}, (b"y" * 80, b""), 1.2)  # held: the budget is spent
    s.check_drained(1.2)
    assert s.take() == [] and s.held_count == 1  # not Stop: the result would be lost
    receipt = first.receipt_to_return()
    assert receipt is not None
    request(s, b"rd", wire.READ, {"read": [receipt]}, now=1.3)
    actions = s.take()
    assert [type(a) for a in actions] == [Send, Stop]  # the result, then the end


def test_a_revocation_drops_the_results_held_for_that_key() -> None:
    allowed = {"key-a"}
    s = AgentSession(
        SessionLimits(ALL, max_unread_bytes=100 + 2 * ENTRY_BYTES),
        b"i",
        allows=allowed.__contains__,
    )
    first, second = (request(s, rid, wire.GET, user_id="key-a") for rid in (b"g1", b"g2"))
    assert first is not None and second is not None
    s.finish(first, {"data": b"x" * 80}, (), 0.0)
    s.finish(second, {"data": b"y" * 80}, (), 0.0)
    s.take()
    assert s.held_count == 1
    allowed.clear()
    s.keys_changed()
    assert s.held_count == 0 and s.counters["dropped.held"] == 1


def test_a_controller_with_only_file_work_is_not_forgotten() -> None:
    s = session()
    request(s, b"p1", wire.PUT, user_id="key-a")
    s.file_op_started((A, b"p1"))
    s.tick(IDLE_FORGET_S + 5)
    assert s.peer_keys.get(A) == "key-a"  # its key is still known when its result is checked


def test_the_session_s_copies_of_other_modules_numbers_agree() -> None:
    assert agent_session.STREAM_CHUNK == spawn.READ_CHUNK
    assert SessionLimits(ALL).max_kill_grace_s == MAX_KILL_GRACE_S
