"""The ZeroMQ executor's rules with no socket and no clock, as coordinator_core is the broker's.

What each reply from the agent means for the calls waiting on it: whether the agent that
answers is the one we spoke to (its incarnation), whether it has gone silent (its learned
heartbeat rhythm), what it told us of its limits, its drain and our key, which waiting calls
it no longer knows, and when a stream's reader has taken enough output to credit back. The
shell (zmq_node_executor.py) owns the socket, the futures and the asyncio tasks; it hands
each reply to `receive(reply, now)` and calls `tick(now, waiting)` on its heartbeat, and acts
on the events that come back. tests/unit/test_executor_session.py drives it with numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zcl import agent_wire as wire
from zcl.errors import WireError
from zcl.heartbeat import Liveness
from zcl.protocols import Stream

STREAM_WINDOW = 1024 * 1024  # streamed output the agent may send ahead of our consuming it


@dataclass(frozen=True)
class Answered:
    """The result (DONE) or refusal (ERROR) of request `request_id`."""

    request_id: bytes
    reply: wire.Reply


@dataclass(frozen=True)
class Output:
    """A chunk of a streaming command's output."""

    request_id: bytes
    stream: Stream
    data: bytes


@dataclass(frozen=True)
class Lost:
    """The agent does not know these waiting requests: lost with a reconnect."""

    request_ids: tuple[bytes, ...]


@dataclass(frozen=True)
class Draining:
    """The agent is stopping: start nothing more on this connection, and promise it so."""


@dataclass(frozen=True)
class LinkFailed:
    """The connection is no use any more: every waiting call fails and the socket is replaced.
    `revoked` names the request whose refusal said our key was revoked, and `started` whether
    it had begun (None where the agent did not say)."""

    reason: str
    revoked: bytes | None = None
    started: bool | None = None


@dataclass(frozen=True)
class Ping:
    """Time for a heartbeat: ask the agent about these waiting requests."""

    request_ids: tuple[bytes, ...]


Event = Answered | Output | Lost | Draining | LinkFailed | Ping


@dataclass
class ExecutorSession:
    """One executor's view of its agent. Times are passed in, in seconds (monotonic)."""

    now: float
    silence_s: float  # the least silence after which the agent counts as gone
    endpoint: str = "the agent"  # for the messages
    incarnation: bytes | None = None
    agent_limits: dict[str, int | float] | None = None  # from its pongs, once it answered
    liveness: Liveness = field(init=False)
    uncredited: dict[bytes, int] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.reset(self.now)

    def next_id(self) -> bytes:
        return next(self.ids).to_bytes(8, "big")

    def reset(self, now: float) -> None:
        """After a failed connection: the agent that answers next is a new one to us."""
        self.incarnation, self.agent_limits = None, None
        self.liveness = Liveness(now, floor_s=self.silence_s, unlearned_allowance_s=self.silence_s)
        self.uncredited.clear()

    def started_waiting(self, now: float) -> None:
        """A first call after an idle spell: the agent had no reason to speak till now."""
        self.liveness.expect_from(now)

    def receive(self, reply: wire.Reply, now: float) -> list[Event]:
        self.liveness.heard(now, is_heartbeat=reply.kind == wire.PONG)
        pong = wire.PongReply.read(_body(reply)) if reply.kind == wire.PONG else None
        if pong is not None and pong.limits is not None:
            self.agent_limits = dict(pong.limits)
        if self.incarnation is None:
            self.incarnation = reply.incarnation
        elif reply.incarnation != self.incarnation:
            return [LinkFailed("the agent restarted; commands in flight there are lost")]
        events: list[Event] = []
        if reply.kind == wire.ERROR:
            error = wire.ErrorReply.read(_body(reply))
            if error.code == wire.ErrorCode.SHUTTING_DOWN:
                events.append(Draining())  # a refused call still learns of it below
                if reply.request_id == wire.DRAIN_ID:
                    return events
            elif error.code == wire.ErrorCode.KEY_REFUSED:
                # Revoked while connected: nothing more is served on this connection, and a
                # new one is refused at the handshake. The refusal says whether it had begun.
                return [
                    LinkFailed(
                        "the agent refused our key (revoked from its authorized_keys)",
                        revoked=reply.request_id,
                        started=error.started,
                    )
                ]
        if pong is not None and reply.request_id == wire.HEARTBEAT_ID:
            return [*events, Lost(pong.unknown)] if pong.unknown else events
        if reply.kind == wire.OUT:
            return [*events, *_output(reply)]
        return [*events, Answered(reply.request_id, reply)]

    def may_start(self, operation: bytes, body: Mapping[str, Any], *, draining: bool) -> bool:
        """Once the agent said it drains we promised to start nothing more on this connection:
        only what finishes work under way there still goes (a put's pieces, a get's later
        pieces: the agent finishes those), and pings, which start nothing and are how a
        caller sees the drain."""
        if not draining or operation in (wire.PING, wire.WRITE):
            return True
        return operation == wire.GET and bool(body.get("offset"))

    def tick(self, now: float, waiting: Sequence[bytes]) -> Event | None:
        """On the heartbeat, while calls wait: a silence past the learned rhythm fails the
        connection; else a ping asks about the oldest of them."""
        if not waiting:
            return None
        if self.liveness.is_dead(now):
            silence = now - self.liveness.last_heard
            return LinkFailed(f"no answer from the agent at {self.endpoint} for {silence:.1f} s")
        return Ping(tuple(waiting[: wire.MAX_PING_IDS]))

    def consumed(self, request_id: bytes, size: int) -> wire.CreditMessage | None:
        """A stream's reader took `size` bytes: the credit to send, a quarter window at a
        time (`credited` once it has gone; if it could not go, it grows until it can)."""
        owed = self.uncredited[request_id] = self.uncredited.get(request_id, 0) + size
        return wire.CreditMessage(request_id, owed) if owed >= STREAM_WINDOW // 4 else None

    def credited(self, request_id: bytes) -> None:
        self.uncredited.pop(request_id, None)

    def ended(self, request_id: bytes) -> None:
        self.uncredited.pop(request_id, None)


def _body(reply: wire.Reply) -> dict[str, Any]:
    try:
        return reply.body()
    except WireError:
        return {}  # a malformed body; the waiting call reports it


def _output(reply: wire.Reply) -> list[Event]:
    try:
        out = wire.OutReply.read(reply)
    except WireError:
        return []  # not output we can place: the call's result still comes
    stream: Stream = "stdout" if out.stream == wire.STDOUT else "stderr"
    return [Output(reply.request_id, stream, out.data)]
