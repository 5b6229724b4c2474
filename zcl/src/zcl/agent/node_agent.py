"""The node agent: the daemon on every node, ZeroMQ's counterpart of sshd.

It binds a ROUTER (sshd listens; controllers connect, as ssh does) with CurveZMQ on by default:
its key pair is the node's host key, which controllers pin, and it accepts only the controller
keys listed in its authorized_keys (reread when the file changes, so keys rotate live). The
check is made on every message, not only at the handshake: a key taken out of authorized_keys
while its controller is connected has that controller's commands killed and every later request
answered `key-refused`, within a housekeeping tick. Each
request names an operation that is looked up in OPERATIONS, an explicit allow-list that
`--operations` can narrow further; nothing on the wire is ever used as a method name.

    run      a shell command, with timeout, environment, working directory and stdin; its
             output comes back at the end, or streamed as it is produced (with a window, paced
             by the controller's credit); a timeout or cancel kills its process group (SIGTERM
             and a grace first, if asked); as another user only if --run-as lists that user
    credit   a streaming controller has consumed so many bytes (allowed wherever run is)
    cancel   kill a running command's process group
    put/get  write or read a file (up to --max-file-bytes, in pieces: `write` carries a put's)
             or a folder's listing, below a --file-root (none given: no files), never through
             a symbolic link, never a kernel view, never with a set-id bit (file_access.py)
    sysinfo  the node's hardware (system_probe.py)
    ping     liveness, the agent's counters, how many commands run

A command meets what an SSH login as its user would (protocols.login_environment and
shell_script): that user's HOME, USER, LOGNAME and SHELL, a fixed PATH, LANG=C.UTF-8, umask
022, the home folder as working folder, and the resource limits the agent was started with;
nothing of the agent's own environment.

Limits keep one bad controller from hurting the node or the others: at most --max-concurrent
commands, at most --max-output-bytes of output kept per command, or less when the request
asks (the rest is read and dropped, and the result says `truncated`), no message above
--max-message-bytes (libzmq drops the sender), and at most --max-unread-mib of replies a
controller key has not shown it read (each result and output chunk carries a receipt the
controller sends back; past the budget results wait and streams pause: reply_ledger.py). Its
pongs carry these limits, so that a controller refuses an oversized request before sending it.
Bad requests get an error reply or are dropped, and are counted; nothing stops the agent.

An agent started on a fixed endpoint first kills what an earlier agent with the same keys and
endpoint left running (one SIGKILLed mid-command cannot): every command's processes carry a
ZCL_COMMAND_ID that names the agent (spawn.py), counted as `reaped`; and it removes the
temporary files of puts that agent never finished (noted under --state-dir: staging_ledger.py).

Start-up errors (a port taken, keys or roots unusable, a bad setting) are one line and exit
status 1, with nothing left open, so that systemd's Restart= starts it again.

A controller beats while it waits for commands (zcl.heartbeat learns its rhythm);
if it goes silent its commands are killed, as sshd's are when an SSH connection drops. SIGTERM
drains: new commands are refused, running ones get --drain-timeout to finish, then are killed.

    python -m zcl.agent.node_agent --keys KEYDIR/nodes/node1 --bind tcp://*:5560
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import os
import pwd
import resource
import shutil
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from zcl import agent_wire as wire
from zcl import cli, curve
from zcl import keys as keyfiles
from zcl.agent import spawn
from zcl.agent.file_access import (
    FileRoots,
    Listing,
    Located,
    PathRefusedError,
    Piece,
    RootRefusedError,
    Staged,
    make_folder,
    open_staged,
    read_file,
    read_piece,
    safe_mode,
    stage_file,
)
from zcl.agent.reply_ledger import ReplyLedger, new_receipt
from zcl.agent.spawn import (
    READ_CHUNK,
    STDOUT,
    Finished,
    RunAs,
    RunningCommand,
    SpawnError,
    WarmShells,
)
from zcl.agent.staging_ledger import StagingLedger
from zcl.agent_wire import ErrorCode
from zcl.errors import CliError, ProbeError, WireError
from zcl.heartbeat import Liveness
from zcl.loop_socket import LoopSocket
from zcl.protocols import login_environment, shell_script
from zcl.run_options import MAX_KILL_GRACE_S, RunOptions
from zcl.system_probe import PROBE_SCRIPT, parse_probe
from zcl.wire import recv_now, recv_now_as

log = logging.getLogger("zcl.agent.node_agent")  # its module path, also under python -m
MiB = 1024 * 1024
HOUSEKEEPING_S = 0.25
DRAIN_ACK_S = 2.0  # the longest a stopping agent waits for its controllers to answer the notice
TRANSFER_IDLE_S = 30.0  # a put whose next piece does not come in this long is abandoned
MAX_ENTRIES = 100_000  # the most entries a get of a folder lists
MIN_STREAM_WINDOW = 64 * 1024  # the least output a streaming controller may let run ahead
# The smallest --max-message-bytes: a controller sends requests up to this size (a file piece
# of a megabyte and its envelope) before it has asked the agent for its limits.
MIN_MESSAGE_BYTES = wire.UNASKED_REQUEST_BYTES
MAX_REASON_CHARS = 512  # an error's reason, cut: errors are not charged to the unread budget


@dataclass
class AgentConfig:
    bind: str = "tcp://*:5560"
    keys: keyfiles.AgentKeys | None = None  # None: no CurveZMQ, only with --insecure
    operations: frozenset[bytes] = field(default_factory=lambda: frozenset(OPERATIONS))
    max_concurrent: int = 64
    max_output_bytes: int = 16 * MiB
    max_message_bytes: int = 64 * MiB
    max_file_bytes: int = 4096 * MiB  # files travel in pieces: this guards the disk, not memory
    drain_timeout_s: float = 30.0
    max_kill_grace_s: float = MAX_KILL_GRACE_S  # the longest SIGTERM-to-SIGKILL a request may ask
    controller_timeout_s: float = 5.0  # least silence that counts a controller as gone
    hwm: int = 1000
    # Replies sent and not yet acknowledged read (reply_ledger.py), per key and in all.
    max_unread_bytes: int = 64 * MiB
    max_unread_total_bytes: int = 512 * MiB
    warm_shells: int = 8  # shells started ahead of need (spawn.WarmShells); 0 turns it off
    file_roots: tuple[Path, ...] = ()  # where put/get may reach; none: no files are served
    ready_file: Path | None = None  # holds the bound endpoint while the agent serves
    run_as: dict[str, RunAs] = field(default_factory=dict)  # users a command may ask to run as
    state_dir: Path | None = None  # notes of puts under way, for the next agent to tidy


@dataclass
class _Transfer:
    """A put arriving in pieces."""

    staged: Staged
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
    command: RunningCommand | None = None


class NodeAgent:
    def __init__(self, config: AgentConfig, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.cfg, self.ctx = config, ctx
        self.incarnation = os.urandom(8)
        self.counters: Counter[str] = Counter()
        self.running: dict[tuple[bytes, bytes], RunningCommand] = {}
        self.controllers: dict[bytes, Liveness] = {}
        self.draining_since: float | None = None
        self.drain_unanswered: set[bytes] = set()  # controllers told of the drain, not yet answered
        self.stopped = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.file_ops: set[tuple[bytes, bytes]] = set()  # (peer, request id) of put/get/sysinfo
        self.streams: dict[tuple[bytes, bytes], _Stream] = {}  # streaming commands' pacing
        self.transfers: dict[tuple[bytes, bytes], _Transfer] = {}  # (peer, handle) -> a put
        # A login's environment for the agent's own user, not the agent's (its keys folder,
        # its virtualenv, systemd's variables): what an SSH login as that user would get.
        self.env = _own_login_environment()
        self.command_limits = ""  # shell code restoring limits the agent raised for itself
        self.warm = WarmShells(self.env, size=config.warm_shells)
        self.endpoint = ""
        self.link: LoopSocket[tuple[list[bytes], str | None]] | None = None
        self.authorized: keyfiles.AuthorizedKeys | None = None
        if config.keys is not None:
            self.authorized = keyfiles.AuthorizedKeys(config.keys.authorized_keys, self.counters)
        self.keys_seen = 0  # the authorized_keys generation housekeeping last enforced
        self.peer_keys: dict[bytes, str] = {}  # routing id -> the key (Z85) it authenticated with
        self.staging = StagingLedger(None)  # run_agent gives it a folder when it has one
        self.files = file_roots(config)
        self.ledger = ReplyLedger(config.max_unread_bytes, config.max_unread_total_bytes)
        self.held: dict[bytes, deque[_Held]] = {}  # per controller, in the order they came
        self.held_count = 0
        self.probed: dict[bytes, float] = {}  # forgotten controllers still owing, last probed
        self.hold_notes = curve.RepeatedLines()

    # -- sockets -----------------------------------------------------------------------------

    def _open(self) -> LoopSocket[tuple[list[bytes], str | None]]:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.router_mandatory = True  # a reply to a vanished controller raises, and is counted
        sock.maxmsgsize = self.cfg.max_message_bytes
        sock.sndhwm = sock.rcvhwm = self.cfg.hwm
        cli.serve_strangers_briefly(sock)
        if self.cfg.keys is not None:
            sock.curve_server = True
            sock.curve_secretkey = self.cfg.keys.secret
            sock.curve_publickey = self.cfg.keys.public
        try:
            self.endpoint = cli.bind(sock, self.cfg.bind)
        except CliError:
            sock.close()  # an open socket would hold ctx.term() for ever: exit, so systemd restarts
            raise
        return LoopSocket(sock, self.handle, _receive_as if self.authorized else _receive)

    def send(self, frames: list[bytes]) -> bool:
        if self.link is None:
            return False
        try:
            self.link.send(frames)
            return True
        except zmq.Again:
            self.counters["dropped.reply-hwm"] += 1
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.counters["dropped.controller-gone"] += 1
        return False

    def answer(self, req: wire.Request, kind: bytes, *rest: bytes) -> bool:
        return self.send(wire.reply(req.peer, req.request_id, kind, self.incarnation, *rest))

    def refuse(self, req: wire.Request, code: ErrorCode, reason: str, **detail: Any) -> None:
        self.counters[f"refused.{code}"] += 1
        body = {"code": code, "reason": reason[:MAX_REASON_CHARS], **detail}
        self.answer(req, wire.ERROR, wire.encode_body(body))

    def finish(self, req: wire.Request, body: dict[str, Any], *frames: bytes) -> None:
        """A result (DONE), with its receipt: sent now if the controller's unread budget has
        room, else held until it reads what it was sent (its operation stays counted
        against --max-concurrent meanwhile, so what waits is bounded too)."""
        receipt = new_receipt()
        encoded = wire.encode_body(dict(body, receipt=receipt))
        reply = wire.reply(req.peer, req.request_id, wire.DONE, self.incarnation, encoded, *frames)
        held = _Held(req.request_id, reply, receipt, len(encoded) + sum(map(len, frames)))
        waiting = self.held.get(req.peer)
        reason = self.ledger.holding_back(self._account(req.peer), held.size)
        if waiting is None and reason is None:
            self._send_charged(req.peer, held)
            return
        self.held.setdefault(req.peer, deque()).append(held)
        self.held_count += 1
        self.counters["held"] += 1
        self._pause_streams()  # results first: a trickle of output must not starve one
        if reason is not None:
            self._note_held(req.peer, reason)

    def _account(self, peer: bytes) -> bytes:
        """Whose budget a connection spends: its controller's key, all its connections
        together (the connection itself without keys)."""
        charged = self.ledger.account_of(peer)  # kept while it owes, whatever is forgotten
        if charged is not None:
            return charged
        key = self.peer_keys.get(peer)
        return peer if key is None else key.encode()

    def _note_held(self, peer: bytes, reason: str) -> None:
        who = self.peer_keys.get(peer) or peer.hex()
        held_back = self.hold_notes.due(who, time.monotonic())
        if held_back is not None:
            log.warning(
                "controller %s has %d bytes of replies unread: results wait (%s)%s",
                who, self.ledger.owed_by(self._account(peer)), reason,
                f" [{held_back} more like this]" if held_back else "",
            )  # fmt: skip

    def _send_charged(self, peer: bytes, reply: _Held) -> None:
        self.ledger.charge(peer, reply.receipt, reply.size, self._account(peer))
        if not self.send(reply.frames):
            self.ledger.unsent(peer, reply.receipt)

    def _send_held(self) -> None:
        """Results that may go now: each controller's in order, while its budget has room."""
        for peer, waiting in list(self.held.items()):
            account = self._account(peer)
            while waiting and self.ledger.holding_back(account, waiting[0].size) is None:
                self.held_count -= 1
                self._send_charged(peer, waiting.popleft())
            if not waiting:
                del self.held[peer]
        self._check_drained(time.monotonic())

    def _drop_held(self, peer: bytes) -> None:
        """A controller gone or revoked: what waited for it is dropped."""
        waiting = self.held.pop(peer, None)
        if waiting:
            self.held_count -= len(waiting)
            self.counters["dropped.held"] += len(waiting)

    def _returned(self, req: wire.Request) -> None:
        """The receipts a request brings back: room in the budget, for results and streams."""
        receipts = wire.receipts_field(req.body)
        if receipts and self.ledger.release(req.peer, receipts):
            self._send_held()
            self._resume_streams()

    def refuse_revoked(self, req: wire.Request, *, started: bool) -> None:
        """`started` tells the controller whether the request had begun (a command killed at
        the revocation) or never ran here, which another transport may then run safely."""
        reason = "this controller's key is no longer authorized"
        self.refuse(req, ErrorCode.KEY_REFUSED, reason, started=started)

    # -- the loop ----------------------------------------------------------------------------

    async def serve(self, on_ready: Callable[[str], None] | None = None) -> None:
        auth: curve.AsyncioZapHandler | None = None
        housekeeping: asyncio.Task[None] | None = None
        # Everything opened below is closed in `finally`, whatever fails on the way (a port
        # taken, a ready file that cannot be written): a socket left open would hold the
        # context's term() for ever, and a hung agent is one systemd never restarts.
        try:
            if self.authorized is not None:
                shadow = zmq.asyncio.Context.shadow(self.ctx)
                auth = curve.AsyncioZapHandler(shadow, self.authorized)
                auth.start()  # the ZAP handler must be in place before the first handshake
                auth.configure_curve_callback("*", credentials_provider=self.authorized)
                self.authorized.refresh()
                self.keys_seen = self.authorized.generation
            self.link = self._open()
            self.warm.wanted.set()
            housekeeping = asyncio.create_task(self._housekeeping())
            if on_ready is not None:
                on_ready(self.endpoint)
            await self.stopped.wait()
        finally:
            if housekeeping is not None:
                housekeeping.cancel()
            for cmd in self.running.values():
                cmd.kill()
            for task in list(self.tasks):
                task.cancel()
            for transfer in self.transfers.values():
                if not transfer.writing:  # a thread still writing one closes nothing of ours
                    transfer.staged.discard()
            if self.link is not None:
                if self.draining_since is not None:
                    self.link.sock.linger = 2000  # let the last results reach their controllers
                self.link.close()
            self.warm.close()
            if auth is not None:
                auth.stop()

    def handle(self, message: tuple[list[bytes], str | None]) -> None:
        try:
            self._handle(*message)
        except Exception:  # one bad request must never take the agent down
            log.exception("internal error while handling a request; dropped")
            self.counters["dropped.internal-error"] += 1

    def _handle(self, frames: list[bytes], user_id: str | None) -> None:
        try:
            req = wire.parse_request(frames)
        except WireError as exc:
            self.counters[f"dropped.{exc.kind}"] += 1
            log.debug("dropped a malformed request: %s", exc)
            return
        if user_id is not None:
            self.peer_keys[req.peer] = user_id
            if self._revoked(req.peer):
                self._end_session(req.peer)
                self.refuse_revoked(req, started=False)
                return
        now = time.monotonic()
        liveness = self.controllers.get(req.peer)
        if liveness is None:
            liveness = self.controllers[req.peer] = Liveness(
                now, floor_s=self.cfg.controller_timeout_s
            )
        liveness.heard(now, is_heartbeat=req.operation == wire.PING)
        try:
            self._returned(req)
        except WireError as exc:
            self.refuse(req, ErrorCode.of(exc.kind), exc.detail)
            return
        if req.operation == wire.PING and req.request_id == wire.DRAIN_ID:
            self.drain_unanswered.discard(req.peer)  # nothing more will start from this peer
            self._check_drained(now)
        handler = OPERATIONS.get(req.operation)
        allowed = (
            req.operation in self.cfg.operations
            or IMPLIED.get(req.operation) in self.cfg.operations
            or req.operation == wire.READ  # returning receipts is part of every operation
        )
        if handler is None or not allowed:
            self.refuse(
                req, ErrorCode.NOT_ALLOWED, f"operation {req.operation[:32]!r} is not allowed"
            )
            return
        try:
            handler(self, req)
        except WireError as exc:
            self.refuse(req, ErrorCode.of(exc.kind), exc.detail)
        except Exception:  # a bug of ours: the controller still gets an answer, never silence
            log.exception("internal error in %r", req.operation[:32])
            self.counters["internal-error"] += 1
            self.refuse(
                req, ErrorCode.INTERNAL_ERROR, "the agent failed on this request; see its log"
            )

    async def _housekeeping(self) -> None:
        """Kill the commands of controllers that went silent; end a drain when it is done.
        A failure in one tick is logged and the next tick comes: a task that ended here
        would leave dead controllers' commands running and a drain without its timeout."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)  # a timer tick, not synchronisation
            try:
                self._housekeeping_tick(time.monotonic())
            except Exception:
                log.exception("internal error in housekeeping")
                self.counters["internal-error"] += 1

    def _housekeeping_tick(self, now: float) -> None:
        busy = {peer for peer, _ in self.running} | {peer for peer, _ in self.transfers}
        busy |= set(self.held)
        lost: set[bytes] = set()
        for peer, liveness in list(self.controllers.items()):
            if peer in busy and liveness.is_dead(now):
                lost.add(peer)
                self.counters["controller-lost"] += 1
                log.warning("controller went silent; killing its commands")
                for (owner, _), cmd in list(self.running.items()):
                    if owner == peer:
                        cmd.cancel()
                self._drop_held(peer)
            if peer not in busy and now - liveness.last_heard > 60:
                del self.controllers[peer]  # forget idle controllers: memory stays bounded
                self.peer_keys.pop(peer, None)
        self._forget_gone_connections(now)
        drain_over = (
            self.draining_since is not None and now - self.draining_since > self.cfg.drain_timeout_s
        )
        if drain_over:  # transfers still open at the drain timeout are given up too
            lost |= {peer for peer, _ in self.transfers}
        self._expire_transfers(now, lost)
        self._enforce_authorized_keys()
        if self.draining_since is not None:
            self._check_drained(now)
            if self.running and drain_over:
                log.warning("drain timeout: killing %d command(s)", len(self.running))
                for cmd in self.running.values():
                    cmd.cancel()

    def _forget_gone_connections(self, now: float) -> None:
        """What a controller was sent stays charged while libzmq may still hold it: until a
        send finds its connection gone. A controller silent for --controller-timeout is
        probed, once per timeout, with an empty heartbeat answer that any controller ignores."""
        every = self.cfg.controller_timeout_s
        for peer in self.ledger.peers():
            liveness = self.controllers.get(peer)
            if liveness is not None and now - liveness.last_heard < every:
                continue
            if now - self.probed.get(peer, 0.0) < every:
                continue
            self.probed[peer] = now
            if self._still_connected(peer):
                continue
            self.ledger.forget(peer)
            self.probed.pop(peer, None)
            self.counters["unread.forgotten"] += 1
            self._send_held()
            self._resume_streams()
        for peer in set(self.probed).difference(self.ledger.peers()):
            del self.probed[peer]  # owes nothing now: nothing to probe for

    def _still_connected(self, peer: bytes) -> bool:
        probe = wire.reply(
            peer, wire.HEARTBEAT_ID, wire.PONG, self.incarnation, wire.encode_body({"unknown": []})
        )
        try:
            if self.link is not None:
                self.link.send(probe)
        except zmq.Again:
            pass  # its queue is full: connected, and not reading
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            return False
        return True

    def _enforce_authorized_keys(self) -> None:
        """A key taken out of authorized_keys: end its sessions without waiting for a request."""
        if self.authorized is None:
            return
        self.authorized.refresh()
        if self.authorized.generation != self.keys_seen:
            self.keys_seen = self.authorized.generation
            for peer in {owner for owner, _ in self.running}:
                if self._revoked(peer):
                    self._end_session(peer)

    def _revoked(self, peer: bytes) -> bool:
        """Did this peer authenticate with a key that authorized_keys no longer lists?"""
        user_id = self.peer_keys.get(peer)
        if self.authorized is None or user_id is None:
            return False
        return not self.authorized.allows(user_id)

    def _end_session(self, peer: bytes) -> None:
        """Kill what a revoked key's session runs. libzmq cannot drop one peer of a ROUTER, so
        the connection stays up, but every request on it is refused from now on."""
        mine = [cmd for (owner, _), cmd in self.running.items() if owner == peer]
        if mine:
            log.warning(
                "key %s revoked: killing %d command(s) of its session",
                self.peer_keys.get(peer),
                len(mine),
            )
        for cmd in mine:
            self.counters["killed.key-revoked"] += 1
            cmd.cancel(grace=False)  # its controller lost its say: SIGKILL now, no grace
        self._drop_held(peer)

    def request_stop(self) -> None:
        if self.draining_since is None:
            log.info("draining: %d command(s) running, new ones refused", len(self.running))
            self.draining_since = time.monotonic()
            for peer in self.controllers:  # each answers, and from then on starts nothing here
                self._tell_draining(peer)
            self._check_drained(self.draining_since)

    def _tell_draining(self, peer: bytes) -> None:
        if peer in self.drain_unanswered:
            return
        notice = {"code": ErrorCode.SHUTTING_DOWN, "reason": "the agent is shutting down"}
        body = wire.encode_body(notice)
        if self.send(wire.reply(peer, wire.DRAIN_ID, wire.ERROR, self.incarnation, body)):
            self.drain_unanswered.add(peer)

    def _check_drained(self, now: float) -> None:
        """The drain ends when nothing runs (commands, transfers, file work) and every
        controller told of it has answered, or DRAIN_ACK_S has passed for one that never does."""
        if self.draining_since is None or self.running or self.file_ops or self.transfers:
            return
        if self.held and now - self.draining_since <= self.cfg.drain_timeout_s:
            return  # results still waiting for their controllers to read
        if not self.drain_unanswered or now - self.draining_since > DRAIN_ACK_S:
            self.stopped.set()

    def _refused_draining(self, req: wire.Request) -> bool:
        """While draining, nothing new starts: the controller's other transport takes it."""
        if self.draining_since is None:
            return False
        self.refuse(req, ErrorCode.SHUTTING_DOWN, "the agent is shutting down")
        self._tell_draining(req.peer)
        return True

    def _refused_busy(self, req: wire.Request) -> bool:
        """Every operation that holds a thread or a process counts against --max-concurrent:
        commands, file transfers and system probes alike."""
        busy = self._operations_at_work()
        if busy < self.cfg.max_concurrent:
            return False
        self.refuse(req, ErrorCode.BUSY, f"{busy} operations running (the limit)")
        return True

    def _operations_at_work(self) -> int:
        """Results held for an unread budget count: else a controller that never reads would
        have replies pile up here instead of in libzmq."""
        return len(self.running) + len(self.file_ops) + len(self.transfers) + self.held_count

    def spawn_task(self, req: wire.Request, coro: Any) -> None:
        key = (req.peer, req.request_id)
        self.file_ops.add(key)
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda _: self._file_op_done(key))

    def _file_op_done(self, key: tuple[bytes, bytes]) -> None:
        self.file_ops.discard(key)
        self._check_drained(time.monotonic())

    # -- operations --------------------------------------------------------------------------

    def op_run(self, req: wire.Request) -> None:
        if self._refused_draining(req) or self._refused_busy(req):
            return
        if (req.peer, req.request_id) in self.running:
            self.refuse(req, ErrorCode.DUPLICATE_ID, "a command with this request id is running")
            return
        run = wire.RunMessage.read(req.body)
        options = run.options
        script = shell_script(run.command, options.env, options.cwd)
        stream = None
        if run.stream:
            # Below a pipe's read a window could never reopen.
            if run.window is not None and run.window < MIN_STREAM_WINDOW:
                raise WireError(
                    ErrorCode.BAD_FIELD, f"'window' must be at least {MIN_STREAM_WINDOW}"
                )
            stream = self.streams[(req.peer, req.request_id)] = _Stream(run.window)
        sink = None if stream is None else self._streamer(req, stream)
        run_as = self._run_as(options.user)
        script = self.command_limits + script
        output_limit = self.cfg.max_output_bytes
        if options.max_output_bytes is not None:
            asked = options.max_output_bytes
            if asked > output_limit:
                self.streams.pop((req.peer, req.request_id), None)
                reason = f"max_output_bytes {asked} is over this agent's --max-output-bytes"
                self.refuse(req, ErrorCode.OVER_LIMIT, f"{reason} ({output_limit})")
                return
            output_limit = asked
        try:
            held = dataclasses.replace(  # to this agent's limits
                options,
                max_output_bytes=output_limit,
                kill_grace_s=self._kill_grace(options.kill_grace_s),
            )
            cmd = RunningCommand(script, self.env, held, sink=sink, warm=self.warm, run_as=run_as)
        except SpawnError as exc:
            self.streams.pop((req.peer, req.request_id), None)
            self.refuse(req, ErrorCode.SPAWN_FAILED, str(exc))
            return
        key = (req.peer, req.request_id)
        if stream is not None:
            stream.command = cmd
            self._pause_streams()  # before its first chunk, if the budget is met already
        self.running[key] = cmd
        self.counters["commands"] += 1
        cmd.finished.add_done_callback(lambda done: self._command_done(req, done, output_limit))

    def _kill_grace(self, asked: float | None) -> float | None:
        """The grace asked, held to --max-kill-grace: every way a command is stopped (its
        timeout, a cancel, its controller gone, the drain) ends in SIGKILL within the bound,
        whatever the request said."""
        if asked is not None and asked > self.cfg.max_kill_grace_s:
            self.counters["kill-grace.capped"] += 1
            return self.cfg.max_kill_grace_s
        return asked

    def _run_as(self, name: str | None) -> RunAs | None:
        if name is None:
            return None
        run_as = self.cfg.run_as.get(name)
        if run_as is None:
            allowed = ", ".join(sorted(self.cfg.run_as)) or "none"
            raise WireError(
                ErrorCode.NOT_ALLOWED, f"may not run as {name[:64]!r} (--run-as: {allowed})"
            )
        return run_as

    def _streamer(self, req: wire.Request, state: _Stream) -> Callable[[int, bytes], bool]:
        def forward(stream: int, data: bytes) -> bool:
            tag = wire.STDOUT if stream == STDOUT else wire.STDERR
            receipt = new_receipt()
            reply = wire.reply(
                req.peer, req.request_id, wire.OUT, self.incarnation, tag, data, receipt
            )
            size = len(data) + len(tag) + len(receipt)
            self.ledger.charge(req.peer, receipt, size, self._account(req.peer))
            sent = self.send(reply)
            if not sent:
                self.ledger.unsent(req.peer, receipt)
            if state.window is not None:
                state.unacked += len(data)
            # Until the controller's credit (its window) or its receipts (the unread budget,
            # which it cannot claim without reading) come back: this stream, and every other
            # the same budget pays for, else each would send one more chunk past it.
            self._pause_streams()
            return sent

        return forward

    def op_read(self, req: wire.Request) -> None:
        """Receipts alone: taken in _handle, as from every request; nothing to answer."""

    def op_credit(self, req: wire.Request) -> None:
        credit = wire.CreditMessage.read(req.body)
        state = self.streams.get((req.peer, credit.target))
        if state is None or state.window is None:
            return  # a stream that ended, or one without a window: nothing to pace
        state.unacked = max(0, state.unacked - credit.consumed)
        if state.command is not None and state.command.paused and self._may_flow(req.peer, state):
            state.command.resume()

    def _may_flow(self, peer: bytes, state: _Stream) -> bool:
        """Within its window, no result of its key's waiting, and room for a chunk more: one
        read of a pipe (spawn.READ_CHUNK, as a pipe holds up to a megabyte), so no stream's
        next chunk can take its key past the budget."""
        if state.window is not None and state.unacked >= state.window:
            return False
        account = self._account(peer)
        if any(self._account(waiting) == account for waiting in self.held):
            return False
        return self.ledger.holding_back(account, READ_CHUNK) is None

    def _pause_streams(self) -> None:
        for (peer, _), state in self.streams.items():
            command = state.command
            if command is not None and not command.paused and not self._may_flow(peer, state):
                command.pause()
                self.counters["stream.paused"] += 1

    def _resume_streams(self) -> None:
        for (peer, _), state in self.streams.items():
            if state.command is not None and state.command.paused and self._may_flow(peer, state):
                state.command.resume()

    def _command_done(
        self, req: wire.Request, finished: asyncio.Future[Finished], output_limit: int
    ) -> None:
        self.running.pop((req.peer, req.request_id), None)
        self.streams.pop((req.peer, req.request_id), None)
        self._check_drained(time.monotonic())  # stops only after this callback has answered
        if finished.cancelled():
            return
        if self._revoked(req.peer):
            self.refuse_revoked(req, started=True)
            return
        if isinstance(finished.exception(), SpawnError):
            self.refuse(req, ErrorCode.SPAWN_FAILED, str(finished.exception()))
            return
        done = finished.result()
        if done.timed_out:
            self.counters["timeouts"] += 1
        body = {
            "exit_status": done.exit_status,
            "duration_s": done.duration_s,
            "truncated": done.truncated,
            "output_limit": output_limit,
            "timed_out": done.timed_out,
            "cancelled": done.cancelled,
        }
        # Output travels in frames of its own: megabytes are not copied into and out of msgpack.
        self.finish(req, body, done.stdout, done.stderr)

    def op_cancel(self, req: wire.Request) -> None:
        cmd = self.running.get((req.peer, wire.CancelMessage.read(req.body).target))
        if cmd is not None:  # only the controller that started a command may cancel it
            cmd.cancel()
            self.counters["cancelled"] += 1

    def _located(self, path: str) -> tuple[Path, tuple[str, ...]]:
        try:
            return self.files.locate(path)
        except PathRefusedError as exc:
            raise WireError(ErrorCode.FORBIDDEN_PATH, str(exc)) from None

    def op_put(self, req: wire.Request) -> None:
        put = wire.PutMessage.read(req.body)
        located, mode = self._located(put.path), safe_mode(put.mode)
        if self._refused_draining(req) or self._refused_busy(req):
            return
        if put.folder:
            self.spawn_task(
                req, self._file_io(req, lambda: make_folder(located, mode), _folder_made)
            )
            return
        if put.data is None:
            self._open_transfer(req, located, mode, put.size or 0)
            return
        data = put.data
        if len(data) > self.cfg.max_file_bytes:
            self.refuse(req, ErrorCode.TOO_LARGE, f"file over {self.cfg.max_file_bytes} bytes")
            return

        def committed(staged: Staged) -> dict[str, Any]:
            staged.commit()
            return {"bytes": len(data)}

        ledger = self.staging
        work = lambda: stage_file(located, data, mode, ledger)  # noqa: E731
        self.spawn_task(req, self._file_io(req, work, committed))

    def _open_transfer(
        self, req: wire.Request, located: Located, mode: int | None, size: int
    ) -> None:
        if size > self.cfg.max_file_bytes:  # before a byte of it is sent
            self.refuse(req, ErrorCode.TOO_LARGE, f"file over {self.cfg.max_file_bytes} bytes")
            return
        handle = os.urandom(8)

        def opened(staged: Staged) -> dict[str, Any]:
            self.transfers[(req.peer, handle)] = _Transfer(staged, size, time.monotonic())
            return {"transfer": handle}

        ledger = self.staging
        self.spawn_task(req, self._file_io(req, lambda: open_staged(located, mode, ledger), opened))

    def op_write(self, req: wire.Request) -> None:
        """One piece of an open transfer, in order; the last one puts the file in place."""
        piece = wire.WriteMessage.read(req.body)
        key = (req.peer, piece.transfer)
        transfer = self.transfers.get(key)
        if transfer is None:
            self.refuse(
                req, ErrorCode.UNKNOWN_TRANSFER, "no such transfer (finished, failed or expired)"
            )
            return
        offset, data, last = piece.offset, piece.data, piece.last
        end = offset + len(data)
        if transfer.writing or offset != transfer.received or end > transfer.size:
            self.refuse(
                req, ErrorCode.BAD_PIECE, f"expected the piece at {transfer.received}, in order"
            )
            return
        if last and end != transfer.size:
            self.refuse(req, ErrorCode.BAD_PIECE, f"the file is {transfer.size} bytes, not {end}")
            return
        transfer.received, transfer.writing = end, True
        transfer.last_heard = time.monotonic()
        staged = transfer.staged

        def write() -> Staged:
            staged.write_at(offset, data)
            if last:
                staged.finish()
            return staged

        def written(_: Staged) -> dict[str, Any]:
            transfer.writing = False
            if last:
                self.transfers.pop(key, None)
                staged.commit()  # in place as the answer goes: as for a one-message put
            return {"bytes": end}

        def failed() -> None:
            self.transfers.pop(key, None)
            staged.discard()

        self.spawn_task(req, self._file_io(req, write, written, on_failure=failed))

    def op_get(self, req: wire.Request) -> None:
        get = wire.GetMessage.read(req.body)
        located = self._located(get.path)
        first_piece = not get.offset  # later pieces finish a get under way
        if (first_piece and self._refused_draining(req)) or self._refused_busy(req):
            return
        self.counters["gets"] += 1
        if get.offset is None:  # the one-message form: the whole file, in memory
            limit = min(self.cfg.max_file_bytes, self.cfg.max_message_bytes)
            self.spawn_task(req, self._file_io(req, lambda: read_file(located, limit), _whole_file))
            return
        offset, length = get.offset, get.length or 0
        limit = self.cfg.max_file_bytes

        def read() -> Piece | Listing:
            return read_piece(located, offset, length, limit=limit, max_entries=MAX_ENTRIES)

        self.spawn_task(req, self._file_io(req, read, _piece))

    async def _file_io(
        self,
        req: wire.Request,
        work: Callable[[], Any],
        answer: Callable[[Any], dict[str, Any]],
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """`work` in a thread (disk I/O off the event loop); then, back on the loop, `answer`
        turns its outcome into the reply body (and may rename a file into place, so the
        rename and the reply happen in one step of the loop)."""
        try:
            body = answer(await asyncio.to_thread(work))
        except PathRefusedError as exc:  # a link found on the way
            self.refuse(req, ErrorCode.FORBIDDEN_PATH, str(exc))
        except OSError as exc:
            self.refuse(req, ErrorCode.FILE_ERROR, f"{exc.strerror or exc}: {exc.filename or ''}")
        except Exception:  # never leave a request unanswered ("exception never retrieved")
            log.exception("internal error in a file operation")
            self.counters["internal-error"] += 1
            self.refuse(
                req, ErrorCode.INTERNAL_ERROR, "the agent failed on this request; see its log"
            )
        else:
            if self._revoked(req.peer):  # it began while the key was valid; no answer now
                self.refuse_revoked(req, started=True)
            else:
                self.finish(req, body)
            return
        if on_failure is not None:
            on_failure()

    def _expire_transfers(self, now: float, lost: set[bytes]) -> None:
        """Transfers whose controller stopped sending, or went silent, leave no file behind."""
        for key, transfer in list(self.transfers.items()):
            idle = now - transfer.last_heard > TRANSFER_IDLE_S
            if not transfer.writing and (idle or key[0] in lost):
                del self.transfers[key]
                transfer.staged.discard()
                self.counters["transfers.expired"] += 1

    def op_sysinfo(self, req: wire.Request) -> None:
        if self._refused_draining(req) or self._refused_busy(req):
            return
        self.counters["sysinfo"] += 1
        self.spawn_task(req, self._sysinfo(req))

    async def _sysinfo(self, req: wire.Request) -> None:
        try:
            done = await RunningCommand(PROBE_SCRIPT, self.env, RunOptions(timeout_s=10)).finished
            system = parse_probe(done.stdout.decode(errors="replace"))
        except (SpawnError, ProbeError) as exc:
            self.refuse(req, ErrorCode.SYSINFO_FAILED, str(exc))
            return
        self.finish(req, {"system": system.to_dict()})

    def op_ping(self, req: wire.Request) -> None:
        """Also says which of the controller's in-flight request ids this agent does not know:
        lost with a restart or a broken connection, so the controller fails them at once."""
        asked = wire.PingMessage.read(req.body).ids
        waiting = {held.request_id for held in self.held.get(req.peer, ())}
        unknown = [
            rid
            for rid in asked
            if (req.peer, rid) not in self.running
            and (req.peer, rid) not in self.file_ops
            and rid not in waiting
        ]
        warm = self.warm
        counters = dict(
            self.counters,
            **{"warm.taken": warm.taken, "warm.empty": warm.empty, "warm.too-long": warm.too_long},
        )
        body = {
            "running": len(self.running),
            "operations": self._operations_at_work(),
            "held": self.held_count,
            "unread_bytes": self.ledger.owed_by(self._account(req.peer)),
            "limits": self.limits(),
            "draining": self.draining_since is not None,
            "counters": counters,
            "unknown": unknown,
        }
        self.answer(req, wire.PONG, wire.encode_body(body))

    def limits(self) -> dict[str, int | float]:
        """What this agent refuses beyond, for controllers to check before they send."""
        cfg = self.cfg
        return {
            "max_message_bytes": cfg.max_message_bytes,
            "max_output_bytes": cfg.max_output_bytes,
            "max_file_bytes": cfg.max_file_bytes,
            "max_concurrent": cfg.max_concurrent,
            "max_kill_grace_s": cfg.max_kill_grace_s,
            "max_unread_bytes": cfg.max_unread_bytes,
        }


def _own_login_environment() -> dict[str, str]:
    try:
        me = pwd.getpwuid(os.geteuid())
    except KeyError:  # a uid with no passwd entry (some containers): what the process was given
        return login_environment(str(os.geteuid()), os.environ.get("HOME", "/"), "/bin/sh")
    return login_environment(me.pw_name, me.pw_dir, me.pw_shell or "/bin/sh")


def _folder_made(made: bool) -> dict[str, Any]:
    return {"made": made}


def _whole_file(data: bytes) -> dict[str, Any]:
    return {"data": data}


def _piece(outcome: Piece | Listing) -> dict[str, Any]:
    if isinstance(outcome, Listing):
        return {"kind": "folder", "mode": outcome.mode, "entries": outcome.entries}
    return {"kind": "file", "data": outcome.data, "size": outcome.size, "mode": outcome.mode}


def _receive(sock: zmq.Socket[bytes]) -> tuple[list[bytes], str | None]:
    return recv_now(sock), None  # --insecure: nobody is authenticated


def _receive_as(sock: zmq.Socket[bytes]) -> tuple[list[bytes], str | None]:
    return recv_now_as(sock)


# The allow-list: wire name -> handler. Adding an operation means adding it here, on purpose.
OPERATIONS: dict[bytes, Callable[[NodeAgent, wire.Request], None]] = {
    wire.RUN: NodeAgent.op_run,
    wire.CANCEL: NodeAgent.op_cancel,
    wire.PUT: NodeAgent.op_put,
    wire.GET: NodeAgent.op_get,
    wire.SYSINFO: NodeAgent.op_sysinfo,
    wire.PING: NodeAgent.op_ping,
    wire.CREDIT: NodeAgent.op_credit,
    wire.WRITE: NodeAgent.op_write,
    wire.READ: NodeAgent.op_read,
}
# Operations that come with another one: --operations names only the latter.
IMPLIED: dict[bytes, bytes] = {wire.CREDIT: wire.RUN, wire.WRITE: wire.PUT}


def _operations(text: str) -> frozenset[bytes]:
    names = {name.strip().encode() for name in text.split(",") if name.strip()}
    unknown = names - set(OPERATIONS)
    if unknown or not names:
        known = ", ".join(sorted(op.decode() for op in OPERATIONS))
        raise argparse.ArgumentTypeError(f"operations must be some of: {known}")
    return frozenset(names)


def file_roots(config: AgentConfig) -> FileRoots:
    """The roots put and get reach below, never holding the agent's keys or code; its state
    folder, which may lie below one, is never served."""
    return FileRoots.for_agent(
        config.file_roots,
        keys=() if config.keys is None else (config.keys.authorized_keys.parent,),
        private=() if config.state_dir is None else (config.state_dir,),
    )


def _message_limit(text: str) -> int:
    value = cli.positive_int(text)
    if value < MIN_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(f"expected at least {MIN_MESSAGE_BYTES:,}, got {text!r}")
    return value


def _default_state_dir() -> Path:
    given = os.environ.get("STATE_DIRECTORY")  # systemd's, for StateDirectory=
    if given:
        return Path(given.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(base) / "zcl-agent"


def _ready_file(path: Path | None) -> Path | None:
    """Checked before serving: a ready file that cannot be written is a start-up error."""
    if path is not None and not os.access(path.parent, os.W_OK | os.X_OK):
        raise CliError(f"--ready-file {path}: cannot write in {path.parent}")
    return path


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    if args.keys is None and not args.insecure:
        raise CliError("give --keys NODE_KEY_DIR, or --insecure to run without CurveZMQ")
    config = AgentConfig(
        bind=args.bind,
        keys=None if args.keys is None else keyfiles.load_agent_keys(args.keys),
        operations=args.operations,
        max_concurrent=args.max_concurrent,
        max_output_bytes=args.max_output_bytes,
        max_message_bytes=args.max_message_bytes,
        max_file_bytes=args.max_file_bytes,
        drain_timeout_s=args.drain_timeout,
        max_kill_grace_s=args.max_kill_grace,
        max_unread_bytes=args.max_unread_mib * MiB,
        max_unread_total_bytes=args.max_unread_total_mib * MiB,
        warm_shells=args.warm_shells,
        controller_timeout_s=args.controller_timeout,
        file_roots=tuple(args.file_root or ()),
        ready_file=_ready_file(args.ready_file),
        state_dir=args.state_dir,
        run_as=_run_as_users(args.run_as or []),
    )
    try:
        file_roots(config)  # a root that would expose the agent is a start-up error
    except RootRefusedError as exc:
        raise CliError(f"--file-root {exc}") from None
    return config


def _run_as_users(names: list[str]) -> dict[str, RunAs]:
    """--run-as: each user must exist, and only root can become another user."""
    if not names:
        return {}
    if os.geteuid() != 0:
        raise CliError("--run-as needs the agent to run as root (it changes user per command)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise CliError("--run-as needs setpriv (Debian's util-linux) on the PATH")
    users = {}
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise CliError(f"--run-as {name}: no such user") from None
        users[name] = RunAs(name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell, setpriv)
    return users


def agent_identity(config: AgentConfig) -> str | None:
    """What names this agent across restarts: its key folder and its endpoint. None for an
    ephemeral port (tcp://...:*), which no earlier agent can have had."""
    if config.bind.endswith(":*"):
        return None
    keys = "insecure" if config.keys is None else os.path.realpath(config.keys.authorized_keys)
    digest = hashlib.blake2b(f"{keys}|{config.bind}".encode(), digest_size=6).hexdigest()
    return f"agent-{digest}"


async def run_agent(config: AgentConfig) -> None:
    given = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # what commands get back
    log.info("open files: up to %d", cli.raise_open_file_limit())
    identity = agent_identity(config)
    reaped = 0
    if identity is not None:
        spawn.set_identity(identity)
        reaped = await asyncio.to_thread(spawn.reap_predecessors, identity)
        if reaped:
            log.warning("killed %d process(es) an earlier agent here left running", reaped)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    agent = NodeAgent(config, ctx)
    agent.counters["reaped"] = reaped
    if identity is not None and config.state_dir is not None:
        agent.staging = StagingLedger(config.state_dir / identity / "staged")
        swept = await asyncio.to_thread(agent.staging.sweep)
        agent.counters["staged.swept"] = swept
        if swept:
            log.warning("removed %d temporary file(s) of puts an earlier agent left", swept)
    if given != resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        # The agent's own raise is for its connections; a command meets the limit the agent
        # was started with (its unit's LimitNOFILE=), as an SSH session meets sshd's.
        limit = "unlimited" if given == resource.RLIM_INFINITY else str(given)
        agent.command_limits = f"ulimit -S -n {limit} 2>/dev/null; "
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    if config.keys is None:
        log.warning(
            "CurveZMQ is OFF (--insecure): anyone who reaches %s can run commands", config.bind
        )

    def ready(where: str) -> None:
        if config.ready_file is not None:  # before the log line: whoever reads it finds the file
            try:
                _write_whole(config.ready_file, where + "\n")
            except OSError as exc:
                raise CliError(f"--ready-file {config.ready_file}: {exc.strerror}") from None
        cli.announce_ready("node-agent", where)

    try:
        await agent.serve(on_ready=ready)
        agent.staging.tidy()
    finally:
        ctx.term()
        if config.ready_file is not None:
            config.ready_file.unlink(missing_ok=True)
    log.info("stopped; counters: %s", dict(agent.counters))


def _write_whole(path: Path, text: str) -> None:
    """Write by rename, so a script never reads half of it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def _cmd_serve(args: argparse.Namespace) -> int:
    asyncio.run(run_agent(config_from_args(args)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "zcl-agent")
    default = AgentConfig()  # the one place each default is written
    cli.add_endpoint(parser, "--bind", "ZCL_AGENT_BIND", default.bind)
    parser.add_argument(
        "--keys",
        type=Path,
        default=os.environ.get("ZCL_AGENT_KEYS"),
        help="the node's key folder, with host.key_secret and authorized_keys ($ZCL_AGENT_KEYS)",
    )
    parser.add_argument("--insecure", action="store_true", help="no CurveZMQ: tests and demos only")
    parser.add_argument(
        "--file-root",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder put/get may reach below (repeatable; none: no files are served); "
        "refused at start if it holds or lies within the agent's keys, its code or a kernel "
        "view (/proc, /sys, /dev)",
    )
    parser.add_argument(
        "--run-as",
        action="append",
        metavar="USER",
        help="a user a command may ask to run as (repeatable; the agent must be root); "
        "no other user is ever taken",
    )
    parser.add_argument(
        "--operations",
        type=_operations,
        default=default.operations,
        help="comma-separated allow-list (default: all of run,cancel,put,get,sysinfo,ping; "
        "credit, which paces streams, comes with run; read, which returns receipts, always)",
    )
    for option, value in (
        ("--max-concurrent", default.max_concurrent),
        ("--max-output-bytes", default.max_output_bytes),
        ("--max-file-bytes", default.max_file_bytes),
    ):
        parser.add_argument(option, type=cli.positive_int, default=value, help=f"default {value:,}")
    parser.add_argument(
        "--max-message-bytes",
        type=_message_limit,
        default=default.max_message_bytes,
        help=f"default {default.max_message_bytes:,}; at least {MIN_MESSAGE_BYTES:,}, a file "
        "piece and its envelope, which a controller sends without asking first",
    )
    parser.add_argument(
        "--max-unread-mib",
        type=cli.positive_int,
        default=default.max_unread_bytes // MiB,
        metavar="MIB",
        help="replies sent to one controller key (all its connections) and not yet "
        "acknowledged read, past which its results wait and its streams pause "
        f"(default {default.max_unread_bytes // MiB})",
    )
    parser.add_argument(
        "--max-unread-total-mib",
        type=cli.positive_int,
        default=default.max_unread_total_bytes // MiB,
        metavar="MIB",
        help=f"the same over all keys (default {default.max_unread_total_bytes // MiB})",
    )
    parser.add_argument(
        "--drain-timeout",
        type=cli.seconds,
        default=default.drain_timeout_s,
        help=f"seconds (default {default.drain_timeout_s:g})",
    )
    parser.add_argument(
        "--max-kill-grace",
        type=cli.seconds,
        default=default.max_kill_grace_s,
        metavar="S",
        help="the longest grace between SIGTERM and SIGKILL a request may ask for; a larger "
        f"one is held to it (default {default.max_kill_grace_s:g})",
    )
    parser.add_argument(
        "--controller-timeout",
        type=cli.positive_seconds,
        default=default.controller_timeout_s,
        help="least silence (s) after which a controller's commands are killed "
        f"(default {default.controller_timeout_s:g})",
    )
    parser.add_argument(
        "--warm-shells",
        type=cli.non_negative_int,
        default=default.warm_shells,
        help="shells started ahead of need, to take exec off the command's path (0: none)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=_default_state_dir(),
        metavar="DIR",
        help="where the agent notes puts under way, so that after a crash the next agent "
        "removes their temporary files (default: $STATE_DIRECTORY, systemd's StateDirectory=, "
        "else ~/.local/state/zcl-agent)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help="write the bound endpoint here once serving (removed at exit), for scripts",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
