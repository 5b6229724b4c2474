"""The node agent's rules with no socket, no process and no clock, as coordinator_core is the
broker's and executor_session the controller's.

What a request may do here and what the agent owes each controller: whom it heard from and
when (liveness), whose key it came with (revocation), whether it may start at all (the
allow-list, the drain, --max-concurrent, a duplicate id, the limits a run asks for), which
results must wait for their controller to read what it was sent (reply_ledger.py), which
streams must pause for a window or a budget, which pieces of a put come in order, and when a
drain is over.

The shell (node_agent.py) owns the ROUTER, the processes, the threads and the files. It hands
each message to `receive(frames, user_id, now)`, tells the session what started and ended,
calls `tick(now)` on its housekeeping timer, and carries out the actions the session leaves in
`outbox`: replies to send, commands to kill, streams to pause or resume, staged files to
discard, connections to probe, and the end of the drain. A reply that could not be sent goes
back through `undelivered`, so its charge is returned. tests/unit/test_agent_session.py drives
it with frames built by hand and numbers for the time.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zcl import agent_wire as wire
from zcl import curve
from zcl.agent.reply_ledger import ReplyLedger, new_receipt
from zcl.agent_wire import ErrorCode
from zcl.errors import WireError
from zcl.heartbeat import Liveness
from zcl.run_options import MAX_KILL_GRACE_S

log = logging.getLogger(__name__)
Key = tuple[bytes, bytes]  # (connection, request id); for a put in pieces, (connection, handle)

DRAIN_ACK_S = 2.0  # the longest a stopping agent waits for its controllers to answer the notice
TRANSFER_IDLE_S = 30.0  # a put whose next piece does not come in this long is abandoned
IDLE_FORGET_S = 60.0  # a controller with nothing here, silent this long, is forgotten
MIN_STREAM_WINDOW = 64 * 1024  # the least output a streaming controller may let run ahead
MAX_REASON_CHARS = 512  # an error's reason, cut: errors are not charged to the unread budget
# One read of a command's pipe (spawn.READ_CHUNK, held equal by a test): a stream flows only
# while a whole one fits its key's budget, so no stream's next chunk takes the key past it.
STREAM_CHUNK = 1024 * 1024

# Operations that come with another one: --operations names only the latter.
IMPLIED: dict[bytes, bytes] = {wire.CREDIT: wire.RUN, wire.WRITE: wire.PUT}


# -- what the shell is asked to do ------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """A reply. `receipt`: charged to its controller, returned if it cannot go. `notice`: the
    drain notice, which a controller that never got it owes no answer to."""

    frames: list[bytes]
    peer: bytes
    receipt: bytes | None = None
    notice: bool = False


@dataclass(frozen=True)
class Kill:
    """Stop a running command; with grace=False, SIGKILL at once."""

    key: Key
    grace: bool = True


@dataclass(frozen=True)
class Pause:
    """Stop reading a streaming command's pipes."""

    key: Key


@dataclass(frozen=True)
class Resume:
    key: Key


@dataclass(frozen=True)
class Discard:
    """A put in pieces is given up: remove its staged file."""

    key: Key


@dataclass(frozen=True)
class Probe:
    """Is this connection still there? Send `frames`; `connection_gone` if it is not."""

    peer: bytes
    frames: list[bytes]


@dataclass(frozen=True)
class Stop:
    """The drain is over: the agent may exit."""


Action = Send | Kill | Pause | Resume | Discard | Probe | Stop


# -- the state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionLimits:
    """The agent's settings that the rules need (AgentConfig holds them all)."""

    operations: frozenset[bytes]
    max_concurrent: int = 64
    max_output_bytes: int = 16 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    max_file_bytes: int = 4096 * 1024 * 1024
    max_kill_grace_s: float = MAX_KILL_GRACE_S
    max_unread_bytes: int = 64 * 1024 * 1024
    max_unread_total_bytes: int = 512 * 1024 * 1024
    drain_timeout_s: float = 30.0
    controller_timeout_s: float = 5.0
    version: str = ""  # the zcl release this agent runs, said in every pong

    def advertised(self) -> dict[str, int | float]:
        """What this agent refuses beyond, for controllers to check before they send."""
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_output_bytes": self.max_output_bytes,
            "max_file_bytes": self.max_file_bytes,
            "max_concurrent": self.max_concurrent,
            "max_kill_grace_s": self.max_kill_grace_s,
            "max_unread_bytes": self.max_unread_bytes,
        }


@dataclass
class Transfer:
    """A put arriving in pieces: how far it has come."""

    size: int
    last_heard: float
    received: int = 0
    writing: bool = False  # a piece is being written (in a thread): not to be discarded now


@dataclass(frozen=True)
class _Held:
    """A result that waits for its controller to read what it was sent before."""

    request_id: bytes
    frames: list[bytes]
    receipt: bytes
    size: int


@dataclass
class _Stream:
    """A streaming command's pacing: with a window, output not yet credited back."""

    window: int | None
    unacked: int = 0
    paused: bool = False


@dataclass
class AgentSession:
    limits: SessionLimits
    incarnation: bytes
    counters: Counter[str] = field(default_factory=Counter)
    # Does authorized_keys still list this key (Z85)? None: no CurveZMQ, nobody to revoke.
    allows: Callable[[str], bool] | None = None
    outbox: list[Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.controllers: dict[bytes, Liveness] = {}
        self.peer_keys: dict[bytes, str] = {}  # routing id -> the key it authenticated with
        self.draining_since: float | None = None
        self.drain_unanswered: set[bytes] = set()  # told of the drain, not yet answered
        self.running: set[Key] = set()  # commands
        self.file_ops: set[Key] = set()  # put/get/sysinfo at work in a thread or a process
        self.streams: dict[Key, _Stream] = {}
        self.transfers: dict[Key, Transfer] = {}
        self.ledger = ReplyLedger(self.limits.max_unread_bytes, self.limits.max_unread_total_bytes)
        self.held: dict[bytes, deque[_Held]] = {}  # per controller, in the order they came
        self.held_count = 0
        self.probed: dict[bytes, float] = {}  # forgotten controllers still owing, last probed
        self.hold_notes = curve.RepeatedLines()

    def take(self) -> list[Action]:
        actions, self.outbox = self.outbox, []
        return actions

    # -- replies --------------------------------------------------------------------------------

    def answer(self, req: wire.Request, kind: bytes, *rest: bytes) -> None:
        frames = wire.reply(req.peer, req.request_id, kind, self.incarnation, *rest)
        self.outbox.append(Send(frames, req.peer))

    def refuse(self, req: wire.Request, code: ErrorCode, reason: str, **detail: Any) -> None:
        self.counters[f"refused.{code}"] += 1
        error = wire.ErrorReply(code, reason[:MAX_REASON_CHARS], **detail)
        self.answer(req, wire.ERROR, wire.encode_body(error.body()))

    def refuse_revoked(self, req: wire.Request, *, started: bool) -> None:
        """`started` tells the controller whether the request had begun (a command killed at
        the revocation) or never ran here, which another transport may then run safely."""
        reason = "this controller's key is no longer authorized"
        self.refuse(req, ErrorCode.KEY_REFUSED, reason, started=started)

    def finish(
        self, req: wire.Request, body: Mapping[str, Any], frames: Sequence[bytes], now: float
    ) -> None:
        """A result (DONE), with its receipt: sent now if the controller's unread budget has
        room, else held until it reads what it was sent (its operation stays counted
        against --max-concurrent meanwhile, so what waits is bounded too)."""
        if self.revoked(req.peer):  # it began while the key was valid; no result now
            self.refuse_revoked(req, started=True)
            return
        receipt = new_receipt()
        encoded = wire.encode_body(dict(body, receipt=receipt))
        reply = wire.reply(req.peer, req.request_id, wire.DONE, self.incarnation, encoded, *frames)
        held = _Held(req.request_id, reply, receipt, len(encoded) + sum(map(len, frames)))
        waiting = self.held.get(req.peer)
        reason = self.ledger.holding_back(self.account(req.peer), held.size)
        if waiting is None and reason is None:
            self._send_charged(req.peer, held)
            return
        self.held.setdefault(req.peer, deque()).append(held)
        self.held_count += 1
        self.counters["held"] += 1
        self._pause_streams()  # results first: a trickle of output must not starve one
        if reason is not None:
            self._note_held(req.peer, reason, now)

    def output(self, key: Key, stream: bytes, data: bytes) -> None:
        """A chunk of a streaming command's output (stream: wire.STDOUT or wire.STDERR)."""
        peer, request_id = key
        receipt = new_receipt()
        out = wire.OutReply(stream, data, receipt)
        frames = wire.reply(peer, request_id, wire.OUT, self.incarnation, *out.frames())
        self.ledger.charge(
            peer, receipt, len(data) + len(stream) + len(receipt), self.account(peer)
        )
        self.outbox.append(Send(frames, peer, receipt))
        state = self.streams.get(key)
        if state is not None and state.window is not None:
            state.unacked += len(data)
        # Until the controller's credit (its window) or its receipts (the unread budget, which
        # it cannot claim without reading) come back: this stream, and every other the same
        # budget pays for, else each would send one more chunk past it.
        self._pause_streams()

    def undelivered(self, send: Send, now: float) -> None:
        """A reply the socket refused (its controller gone, or its queue full)."""
        if send.receipt is not None:
            self.ledger.unsent(send.peer, send.receipt)
            # What was decided with this charge counted is decided again without it: results
            # held behind it may go, and streams it paused (its key's others too) may flow.
            self._send_held(now)
            self._resume_streams()
        if send.notice:
            self.drain_unanswered.discard(send.peer)
            self.check_drained(now)

    def account(self, peer: bytes) -> bytes:
        """Whose budget a connection spends: its controller's key, all its connections
        together (the connection itself without keys)."""
        charged = self.ledger.account_of(peer)  # kept while it owes, whatever is forgotten
        if charged is not None:
            return charged
        key = self.peer_keys.get(peer)
        return peer if key is None else key.encode()

    def _note_held(self, peer: bytes, reason: str, now: float) -> None:
        who = self.peer_keys.get(peer) or peer.hex()
        held_back = self.hold_notes.due(who, now)
        if held_back is not None:
            log.warning(
                "controller %s has %d bytes of replies unread: results wait (%s)%s",
                who, self.ledger.owed_by(self.account(peer)), reason,
                f" [{held_back} more like this]" if held_back else "",
            )  # fmt: skip

    def _send_charged(self, peer: bytes, reply: _Held) -> None:
        self.ledger.charge(peer, reply.receipt, reply.size, self.account(peer))
        self.outbox.append(Send(reply.frames, peer, reply.receipt))

    def _send_held(self, now: float) -> None:
        """Results that may go now: each controller's in order, while its budget has room."""
        for peer, waiting in list(self.held.items()):
            account = self.account(peer)
            while waiting and self.ledger.holding_back(account, waiting[0].size) is None:
                self.held_count -= 1
                self._send_charged(peer, waiting.popleft())
            if not waiting:
                del self.held[peer]
        self.check_drained(now)

    def _drop_held(self, peer: bytes) -> None:
        """A controller gone or revoked: what waited for it is dropped."""
        waiting = self.held.pop(peer, None)
        if waiting:
            self.held_count -= len(waiting)
            self.counters["dropped.held"] += len(waiting)

    # -- a request arrives ------------------------------------------------------------------

    def receive(self, frames: list[bytes], user_id: str | None, now: float) -> wire.Request | None:
        """A message as the ROUTER gave it (`user_id`: the key it came with, if any). Returns
        the request for the shell to carry out, or None when it was dropped or answered here."""
        try:
            req = wire.parse_request(frames)
        except WireError as exc:
            self.counters[f"dropped.{exc.kind}"] += 1
            log.debug("dropped a malformed request: %s", exc)
            return None
        if user_id is not None:
            self.peer_keys[req.peer] = user_id
            if self.revoked(req.peer):
                self.end_session(req.peer)
                self.refuse_revoked(req, started=False)
                return None
        liveness = self.controllers.get(req.peer)
        if liveness is None:
            liveness = self.controllers[req.peer] = Liveness(
                now, floor_s=self.limits.controller_timeout_s
            )
        liveness.heard(now, is_heartbeat=req.operation == wire.PING)
        try:
            receipts = wire.receipts_field(req.body)
        except WireError as exc:
            self.refuse(req, ErrorCode.of(exc.kind), exc.detail)
            return None
        if receipts and self.ledger.release(req.peer, receipts):
            self._send_held(now)
            self._resume_streams()
        if req.operation == wire.PING and req.request_id == wire.DRAIN_ID:
            self.drain_unanswered.discard(req.peer)  # nothing more will start from this peer
            self.check_drained(now)
        allowed = (
            req.operation in self.limits.operations
            or IMPLIED.get(req.operation) in self.limits.operations
            or req.operation == wire.READ  # returning receipts is part of every operation
        )
        if not allowed:
            self.refuse(
                req, ErrorCode.NOT_ALLOWED, f"operation {req.operation[:32]!r} is not allowed"
            )
            return None
        return req

    def admit(self, req: wire.Request, *, new: bool = True) -> bool:
        """May this request take a slot? While draining nothing `new` starts (the controller's
        other transport takes it); and every operation that holds a thread or a process counts
        against --max-concurrent, results waiting for an unread budget too (else a controller
        that never reads would have replies pile up here instead of in libzmq)."""
        if new and self.draining_since is not None:
            self.refuse(req, ErrorCode.SHUTTING_DOWN, "the agent is shutting down")
            self._tell_draining(req.peer)
            return False
        busy = self.at_work()
        if busy < self.limits.max_concurrent:
            return True
        self.refuse(req, ErrorCode.BUSY, f"{busy} operations running (the limit)")
        return False

    def at_work(self) -> int:
        return len(self.running) + len(self.file_ops) + len(self.transfers) + self.held_count

    # -- commands ---------------------------------------------------------------------------

    def accept_run(self, req: wire.Request, run: wire.RunMessage) -> int | None:
        """After `admit`: the output limit a command runs under (this agent's, or less if
        asked), or None when it is refused (answered here)."""
        if (req.peer, req.request_id) in self.running:
            self.refuse(req, ErrorCode.DUPLICATE_ID, "a command with this request id is running")
            return None
        if run.stream and run.window is not None and run.window < MIN_STREAM_WINDOW:
            # Below a pipe's read a window could never reopen.
            self.refuse(req, ErrorCode.BAD_FIELD, f"'window' must be at least {MIN_STREAM_WINDOW}")
            return None
        limit, asked = self.limits.max_output_bytes, run.options.max_output_bytes
        if asked is None:
            return limit
        if asked > limit:
            reason = f"max_output_bytes {asked} is over this agent's --max-output-bytes"
            self.refuse(req, ErrorCode.OVER_LIMIT, f"{reason} ({limit})")
            return None
        return asked

    def kill_grace(self, asked: float | None) -> float | None:
        """The grace asked, held to --max-kill-grace: every way a command is stopped (its
        timeout, a cancel, its controller gone, the drain) ends in SIGKILL within the bound,
        whatever the request said."""
        if asked is not None and asked > self.limits.max_kill_grace_s:
            self.counters["kill-grace.capped"] += 1
            return self.limits.max_kill_grace_s
        return asked

    def command_started(self, key: Key, *, stream: bool, window: int | None = None) -> None:
        self.running.add(key)
        self.counters["commands"] += 1
        if stream:
            self.streams[key] = _Stream(window)
            self._pause_streams()  # before its first chunk, if the budget is met already

    def command_ended(self, key: Key) -> None:
        """Before its result is given to `finish`; the shell then calls `check_drained`, so
        that a drain ends only once that result has gone (or waits, held, with the rest)."""
        self.running.discard(key)
        self.streams.pop(key, None)

    def cancel(self, req: wire.Request, target: bytes) -> None:
        if (req.peer, target) in self.running:  # only the connection that started it
            self.outbox.append(Kill((req.peer, target)))
            self.counters["cancelled"] += 1

    def credit(self, req: wire.Request, credit: wire.CreditMessage) -> None:
        state = self.streams.get((req.peer, credit.target))
        if state is None or state.window is None:
            return  # a stream that ended, or one without a window: nothing to pace
        state.unacked = max(0, state.unacked - credit.consumed)
        if state.paused and self._may_flow(req.peer, state):
            state.paused = False
            self.outbox.append(Resume((req.peer, credit.target)))

    def _may_flow(self, peer: bytes, state: _Stream) -> bool:
        """Within its window, no result of its key's waiting, and room for a chunk more."""
        if state.window is not None and state.unacked >= state.window:
            return False
        account = self.account(peer)
        if any(self.account(waiting) == account for waiting in self.held):
            return False
        return self.ledger.holding_back(account, STREAM_CHUNK) is None

    def _pause_streams(self) -> None:
        for key, state in self.streams.items():
            if not state.paused and not self._may_flow(key[0], state):
                state.paused = True
                self.outbox.append(Pause(key))
                self.counters["stream.paused"] += 1

    def _resume_streams(self) -> None:
        for key, state in self.streams.items():
            if state.paused and self._may_flow(key[0], state):
                state.paused = False
                self.outbox.append(Resume(key))

    # -- files ------------------------------------------------------------------------------

    def file_op_started(self, key: Key) -> None:
        self.file_ops.add(key)

    def file_op_ended(self, key: Key, now: float) -> None:
        self.file_ops.discard(key)
        self.check_drained(now)

    def within_file_limit(self, req: wire.Request, size: int) -> bool:
        """A put over --max-file-bytes is refused before a byte of it is written."""
        if size <= self.limits.max_file_bytes:
            return True
        self.refuse(req, ErrorCode.TOO_LARGE, f"file over {self.limits.max_file_bytes} bytes")
        return False

    def transfer_opened(self, key: Key, size: int, now: float) -> None:
        self.transfers[key] = Transfer(size, now)

    def accept_piece(self, req: wire.Request, piece: wire.WriteMessage, now: float) -> bool:
        """Pieces come one at a time and in order, and end at the size the put announced."""
        transfer = self.transfers.get((req.peer, piece.transfer))
        if transfer is None:
            self.refuse(
                req, ErrorCode.UNKNOWN_TRANSFER, "no such transfer (finished, failed or expired)"
            )
            return False
        end = piece.offset + len(piece.data)
        if transfer.writing or piece.offset != transfer.received or end > transfer.size:
            self.refuse(
                req, ErrorCode.BAD_PIECE, f"expected the piece at {transfer.received}, in order"
            )
            return False
        if piece.last and end != transfer.size:
            self.refuse(req, ErrorCode.BAD_PIECE, f"the file is {transfer.size} bytes, not {end}")
            return False
        transfer.received, transfer.writing, transfer.last_heard = end, True, now
        return True

    def piece_written(self, key: Key, *, last: bool) -> None:
        transfer = self.transfers.get(key)
        if transfer is not None:
            transfer.writing = False
        if last:
            self.transfers.pop(key, None)

    def transfer_failed(self, key: Key) -> None:
        self.transfers.pop(key, None)

    def _expire_transfers(self, now: float, lost: set[bytes]) -> None:
        """Transfers whose controller stopped sending, or went silent, leave no file behind."""
        for key, transfer in list(self.transfers.items()):
            idle = now - transfer.last_heard > TRANSFER_IDLE_S
            if not transfer.writing and (idle or key[0] in lost):
                del self.transfers[key]
                self.outbox.append(Discard(key))
                self.counters["transfers.expired"] += 1

    # -- ping -------------------------------------------------------------------------------

    def pong(self, req: wire.Request, asked: Iterable[bytes], counters: Mapping[str, int]) -> None:
        """Also says which of the controller's in-flight request ids this agent does not know:
        lost with a restart or a broken connection, so the controller fails them at once."""
        waiting = {held.request_id for held in self.held.get(req.peer, ())}
        unknown = [
            rid
            for rid in asked
            if (req.peer, rid) not in self.running
            and (req.peer, rid) not in self.file_ops
            and rid not in waiting
        ]
        pong = wire.PongReply(
            running=len(self.running),
            operations=self.at_work(),
            held=self.held_count,
            unread_bytes=self.ledger.owed_by(self.account(req.peer)),
            limits=self.limits.advertised(),
            draining=self.draining_since is not None,
            counters=dict(counters),
            unknown=tuple(unknown),
            version=self.limits.version,
        )
        self.answer(req, wire.PONG, wire.encode_body(pong.body()))

    # -- keys -------------------------------------------------------------------------------

    def revoked(self, peer: bytes) -> bool:
        """Did this peer authenticate with a key that authorized_keys no longer lists?"""
        user_id = self.peer_keys.get(peer)
        if self.allows is None or user_id is None:
            return False
        return not self.allows(user_id)

    def keys_changed(self) -> None:
        """authorized_keys was reread: end the sessions of keys it no longer lists, without
        waiting for their next request (results held for them are dropped, not sent later)."""
        for peer in {owner for owner, _ in self.running} | set(self.held):
            if self.revoked(peer):
                self.end_session(peer)

    def end_session(self, peer: bytes) -> None:
        """Kill what a revoked key's session runs. libzmq cannot drop one peer of a ROUTER, so
        the connection stays up, but every request on it is refused from now on."""
        mine = sorted(key for key in self.running if key[0] == peer)
        if mine:
            log.warning(
                "key %s revoked: killing %d command(s) of its session",
                self.peer_keys.get(peer),
                len(mine),
            )
        for key in mine:
            self.counters["killed.key-revoked"] += 1
            self.outbox.append(Kill(key, grace=False))  # its controller lost its say
        self._drop_held(peer)

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Kill the commands of controllers that went silent, forget idle ones, probe the
        connections that still owe, expire stalled transfers, and run the drain's clock."""
        busy = {peer for peer, _ in self.running} | {peer for peer, _ in self.transfers}
        busy |= set(self.held) | {peer for peer, _ in self.file_ops}  # its key stays known
        lost: set[bytes] = set()
        for peer, liveness in list(self.controllers.items()):
            if peer in busy and liveness.is_dead(now):
                lost.add(peer)
                self.counters["controller-lost"] += 1
                log.warning("controller went silent; killing its commands")
                self.outbox.extend(Kill(key) for key in sorted(self.running) if key[0] == peer)
                self._drop_held(peer)
            if peer not in busy and now - liveness.last_heard > IDLE_FORGET_S:
                del self.controllers[peer]  # memory stays bounded
                self.peer_keys.pop(peer, None)
        self._probe_owing(now)
        drain_over = (
            self.draining_since is not None
            and now - self.draining_since > self.limits.drain_timeout_s
        )
        if drain_over:  # transfers still open at the drain timeout are given up too
            lost |= {peer for peer, _ in self.transfers}
        self._expire_transfers(now, lost)
        if self.draining_since is not None:
            self.check_drained(now)
            if self.running and drain_over:
                log.warning("drain timeout: killing %d command(s)", len(self.running))
                self.outbox.extend(Kill(key) for key in sorted(self.running))

    def _probe_owing(self, now: float) -> None:
        """What a controller was sent stays charged while libzmq may still hold it: until a
        send finds its connection gone. A controller silent for --controller-timeout is
        probed, once per timeout, with an empty heartbeat answer that any controller ignores."""
        every = self.limits.controller_timeout_s
        for peer in self.ledger.peers():
            liveness = self.controllers.get(peer)
            if liveness is not None and now - liveness.last_heard < every:
                continue
            if now - self.probed.get(peer, 0.0) < every:
                continue
            self.probed[peer] = now
            body = wire.encode_body(wire.PongReply().body())
            probe = wire.reply(peer, wire.HEARTBEAT_ID, wire.PONG, self.incarnation, body)
            self.outbox.append(Probe(peer, probe))
        for peer in set(self.probed).difference(self.ledger.peers()):
            del self.probed[peer]  # owes nothing now: nothing to probe for

    def connection_gone(self, peer: bytes, now: float) -> None:
        """A probe found no connection: what it was charged is free again."""
        self.ledger.forget(peer)
        self.probed.pop(peer, None)
        self.counters["unread.forgotten"] += 1
        self._send_held(now)
        self._resume_streams()

    # -- the drain --------------------------------------------------------------------------

    def start_drain(self, now: float) -> bool:
        """SIGTERM: new work is refused from now on, and every controller is told, so that
        each answers and starts nothing here. False if a drain was under way already."""
        if self.draining_since is not None:
            return False
        self.draining_since = now
        for peer in self.controllers:
            self._tell_draining(peer)
        self.check_drained(now)
        return True

    def _tell_draining(self, peer: bytes) -> None:
        if peer in self.drain_unanswered:
            return
        notice = wire.ErrorReply(ErrorCode.SHUTTING_DOWN, "the agent is shutting down")
        body = wire.encode_body(notice.body())
        frames = wire.reply(peer, wire.DRAIN_ID, wire.ERROR, self.incarnation, body)
        self.outbox.append(Send(frames, peer, notice=True))
        self.drain_unanswered.add(peer)

    def check_drained(self, now: float) -> None:
        """The drain ends when nothing runs (commands, transfers, file work) and every
        controller told of it has answered, or DRAIN_ACK_S has passed for one that never does."""
        if self.draining_since is None or self.running or self.file_ops or self.transfers:
            return
        if self.held and now - self.draining_since <= self.limits.drain_timeout_s:
            return  # results still waiting for their controllers to read
        if not self.drain_unanswered or now - self.draining_since > DRAIN_ACK_S:
            self.outbox.append(Stop())
