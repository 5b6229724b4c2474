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

The rules above (admission, limits, drain, liveness, revocation, the unread budget, stream
pacing, pieces in order) are agent_session.py's, with no socket and no clock; this module is
the shell that owns the ROUTER, the processes, the threads and the files, and carries out what
the session decides.

    python -m zcl.agent.node_agent --keys KEYDIR/nodes/node1 --bind tcp://*:5560
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import pwd
import resource
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from zcl import __version__, cli, curve
from zcl import agent_wire as wire
from zcl import keys as keyfiles
from zcl.agent import spawn
from zcl.agent.agent_session import (
    Action,
    AgentSession,
    Discard,
    Key,
    Kill,
    Pause,
    Probe,
    Resume,
    Send,
    SessionLimits,
    Stop,
)
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
from zcl.agent.spawn import (
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
from zcl.loop_socket import LoopSocket
from zcl.protocols import login_environment, shell_script
from zcl.run_options import MAX_KILL_GRACE_S, RunOptions
from zcl.system_probe import PROBE_SCRIPT, parse_probe
from zcl.wire import recv_now, recv_now_as

log = logging.getLogger("zcl.agent.node_agent")  # its module path, also under python -m
MiB = 1024 * 1024
HOUSEKEEPING_S = 0.25
MAX_ENTRIES = 100_000  # the most entries a get of a folder lists
# The smallest --max-message-bytes: a controller sends requests up to this size (a file piece
# of a megabyte and its envelope) before it has asked the agent for its limits.
MIN_MESSAGE_BYTES = wire.UNASKED_REQUEST_BYTES


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

    def session_limits(self) -> SessionLimits:
        return SessionLimits(
            operations=self.operations,
            max_concurrent=self.max_concurrent,
            max_output_bytes=self.max_output_bytes,
            max_message_bytes=self.max_message_bytes,
            max_file_bytes=self.max_file_bytes,
            max_kill_grace_s=self.max_kill_grace_s,
            max_unread_bytes=self.max_unread_bytes,
            max_unread_total_bytes=self.max_unread_total_bytes,
            drain_timeout_s=self.drain_timeout_s,
            controller_timeout_s=self.controller_timeout_s,
            version=installed_version(),
        )


class NodeAgent:
    """The shell around AgentSession (agent_session.py): the ROUTER, the processes, the
    threads and the files. The rules are the session's; this carries out what it decides."""

    def __init__(self, config: AgentConfig, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.cfg, self.ctx = config, ctx
        self.counters: Counter[str] = Counter()
        self.authorized: keyfiles.AuthorizedKeys | None = None
        if config.keys is not None:
            self.authorized = keyfiles.AuthorizedKeys(config.keys.authorized_keys, self.counters)
        self.session = AgentSession(
            config.session_limits(),
            os.urandom(8),
            self.counters,
            allows=None if self.authorized is None else self.authorized.allows,
        )
        self.commands: dict[Key, RunningCommand] = {}
        self.staged: dict[Key, Staged] = {}  # puts arriving in pieces, by (peer, handle)
        self.stopped = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        # A login's environment for the agent's own user, not the agent's (its keys folder,
        # its virtualenv, systemd's variables): what an SSH login as that user would get.
        self.env = _own_login_environment()
        self.command_limits = ""  # shell code restoring limits the agent raised for itself
        self.warm = WarmShells(self.env, size=config.warm_shells)
        self.endpoint = ""
        self.link: LoopSocket[tuple[list[bytes], str | None]] | None = None
        self.keys_seen = 0  # the authorized_keys generation housekeeping last enforced
        self.staging = StagingLedger(None)  # run_agent gives it a folder when it has one
        self.files = file_roots(config)

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

    def _send(self, frames: list[bytes]) -> bool:
        """False if the reply could not go: its controller gone, or not reading (counted)."""
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

    def _connected(self, probe: Probe) -> bool:
        try:
            if self.link is not None:
                self.link.send(probe.frames)
        except zmq.Again:
            pass  # its queue is full: connected, and not reading
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            return False
        return True

    def carry_out(self) -> bool:
        """Do what the session decided, in order, until it decides nothing more (a reply that
        cannot go, or a gone connection, may free what waited). False if a reply could not go."""
        delivered = True
        while actions := self.session.take():
            now = time.monotonic()
            for action in actions:
                try:
                    delivered = self._carry_out(action, now) and delivered
                except Exception:  # one that fails (a staged file it cannot remove) is logged;
                    # the rest of the batch is still carried out, and the loop goes on
                    log.exception("internal error carrying out %s", type(action).__name__)
                    self.counters["internal-error"] += 1
        return delivered

    def _carry_out(self, action: Action, now: float) -> bool:
        if isinstance(action, Send):
            if self._send(action.frames):
                return True
            self.session.undelivered(action, now)
            return False
        if isinstance(action, Kill | Pause | Resume):
            command = self.commands.get(action.key)
            if command is None:
                pass  # it ended meanwhile
            elif isinstance(action, Kill):
                command.cancel(grace=action.grace)
            elif isinstance(action, Pause):
                command.pause()
            else:
                command.resume()
        elif isinstance(action, Discard):
            staged = self.staged.pop(action.key, None)
            if staged is not None:
                staged.discard()  # may raise (a folder made read-only): carry_out logs it
        elif isinstance(action, Probe):
            if not self._connected(action):
                self.session.connection_gone(action.peer, now)
        elif isinstance(action, Stop):
            self.stopped.set()
        return True

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
            for cmd in self.commands.values():
                cmd.kill()
            for task in list(self.tasks):
                task.cancel()
            for key, staged in self.staged.items():
                transfer = self.session.transfers.get(key)
                if transfer is None or not transfer.writing:  # a writing thread closes nothing
                    with contextlib.suppress(OSError):  # else the socket stays open: term() hangs
                        staged.discard()
            if self.link is not None:
                if self.session.draining_since is not None:
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
        self.carry_out()

    def _handle(self, frames: list[bytes], user_id: str | None) -> None:
        req = self.session.receive(frames, user_id, time.monotonic())
        if req is None:
            return
        handler = OPERATIONS.get(req.operation)
        if handler is None:  # allowed by a hand-made configuration, yet not an operation
            reason = f"operation {req.operation[:32]!r} is not allowed"
            self.session.refuse(req, ErrorCode.NOT_ALLOWED, reason)
            return
        try:
            handler(self, req)
        except WireError as exc:
            self.session.refuse(req, ErrorCode.of(exc.kind), exc.detail)
        except Exception:  # a bug of ours: the controller still gets an answer, never silence
            log.exception("internal error in %r", req.operation[:32])
            self.counters["internal-error"] += 1
            self._failed(req)

    def _failed(self, req: wire.Request) -> None:
        reason = "the agent failed on this request; see its log"
        self.session.refuse(req, ErrorCode.INTERNAL_ERROR, reason)

    async def _housekeeping(self) -> None:
        """The session's clock, and authorized_keys reread. A failure in one tick is logged and
        the next tick comes: a task that ended here would leave dead controllers' commands
        running and a drain without its timeout."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)  # a timer tick, not synchronisation
            try:
                self.session.tick(time.monotonic())
                if self.authorized is not None:
                    self.authorized.refresh()
                    if self.authorized.generation != self.keys_seen:
                        self.keys_seen = self.authorized.generation
                        self.session.keys_changed()
            except Exception:
                log.exception("internal error in housekeeping")
                self.counters["internal-error"] += 1
            self.carry_out()

    def request_stop(self) -> None:
        running = len(self.session.running)
        if self.session.start_drain(time.monotonic()):
            log.info("draining: %d command(s) running, new ones refused", running)
            self.carry_out()

    def spawn_task(self, req: wire.Request, coro: Any) -> None:
        key = (req.peer, req.request_id)
        self.session.file_op_started(key)
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda _: self._file_op_done(key))

    def _file_op_done(self, key: Key) -> None:
        self.session.file_op_ended(key, time.monotonic())
        self.carry_out()

    def finish(self, req: wire.Request, body: dict[str, Any], *frames: bytes) -> None:
        self.session.finish(req, body, frames, time.monotonic())
        self.carry_out()

    def refuse(self, req: wire.Request, code: ErrorCode, reason: str) -> None:
        self.session.refuse(req, code, reason)
        self.carry_out()

    # -- operations --------------------------------------------------------------------------

    def op_run(self, req: wire.Request) -> None:
        if not self.session.admit(req):  # a draining or busy agent says so before anything
            return
        run = wire.RunMessage.read(req.body)
        output_limit = self.session.accept_run(req, run)
        if output_limit is None:
            return
        options, key = run.options, (req.peer, req.request_id)
        script = self.command_limits + shell_script(run.command, options.env, options.cwd)
        run_as = self._run_as(options.user)
        sink = self._streamer(key) if run.stream else None
        try:
            held = dataclasses.replace(  # to this agent's limits
                options,
                max_output_bytes=output_limit,
                kill_grace_s=self.session.kill_grace(options.kill_grace_s),
            )
            cmd = RunningCommand(script, self.env, held, sink=sink, warm=self.warm, run_as=run_as)
        except SpawnError as exc:
            self.session.refuse(req, ErrorCode.SPAWN_FAILED, str(exc))
            return
        self.commands[key] = cmd
        self.session.command_started(key, stream=run.stream, window=run.window)
        cmd.finished.add_done_callback(lambda done: self._command_done(req, done, output_limit))

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

    def _streamer(self, key: Key) -> Callable[[int, bytes], bool]:
        def forward(stream: int, data: bytes) -> bool:
            self.session.output(key, wire.STDOUT if stream == STDOUT else wire.STDERR, data)
            return self.carry_out()

        return forward

    def op_read(self, req: wire.Request) -> None:
        """Receipts alone: taken by the session, as from every request; nothing to answer."""

    def op_credit(self, req: wire.Request) -> None:
        self.session.credit(req, wire.CreditMessage.read(req.body))

    def _command_done(
        self, req: wire.Request, finished: asyncio.Future[Finished], output_limit: int
    ) -> None:
        key = (req.peer, req.request_id)
        self.commands.pop(key, None)
        self.session.command_ended(key)
        self._answer_command(req, finished, output_limit)
        # Only now: a drain ends once this result has gone, or waits while it is held.
        self.session.check_drained(time.monotonic())
        self.carry_out()

    def _answer_command(
        self, req: wire.Request, finished: asyncio.Future[Finished], output_limit: int
    ) -> None:
        if finished.cancelled():
            return
        if self.session.revoked(req.peer):
            self.session.refuse_revoked(req, started=True)
            return
        if isinstance(finished.exception(), SpawnError):
            self.session.refuse(req, ErrorCode.SPAWN_FAILED, str(finished.exception()))
            return
        done = finished.result()
        if done.timed_out:
            self.counters["timeouts"] += 1
        result = wire.RunDone(
            exit_status=done.exit_status,
            duration_s=done.duration_s,
            truncated=done.truncated,
            output_limit=output_limit,
            timed_out=done.timed_out,
            cancelled=done.cancelled,
        )
        # Output travels in frames of its own: megabytes are not copied into and out of msgpack.
        self.session.finish(req, result.body(), (done.stdout, done.stderr), time.monotonic())

    def op_cancel(self, req: wire.Request) -> None:
        self.session.cancel(req, wire.CancelMessage.read(req.body).target)

    def _located(self, path: str) -> tuple[Path, tuple[str, ...]]:
        try:
            return self.files.locate(path)
        except PathRefusedError as exc:
            raise WireError(ErrorCode.FORBIDDEN_PATH, str(exc)) from None

    def op_put(self, req: wire.Request) -> None:
        put = wire.PutMessage.read(req.body)
        located, mode = self._located(put.path), safe_mode(put.mode)
        if not self.session.admit(req):
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
        if not self.session.within_file_limit(req, len(data)):
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
        if not self.session.within_file_limit(req, size):  # before a byte of it is sent
            return
        key = (req.peer, os.urandom(8))

        def opened(staged: Staged) -> dict[str, Any]:
            self.staged[key] = staged
            self.session.transfer_opened(key, size, time.monotonic())
            return {"transfer": key[1]}

        ledger = self.staging
        self.spawn_task(req, self._file_io(req, lambda: open_staged(located, mode, ledger), opened))

    def op_write(self, req: wire.Request) -> None:
        """One piece of an open transfer, in order; the last one puts the file in place."""
        piece = wire.WriteMessage.read(req.body)
        key = (req.peer, piece.transfer)
        staged = self.staged.get(key)  # there whenever the session knows the transfer
        if staged is None or not self.session.accept_piece(req, piece, time.monotonic()):
            if staged is None:
                reason = "no such transfer (finished, failed or expired)"
                self.session.refuse(req, ErrorCode.UNKNOWN_TRANSFER, reason)
            return
        offset, data, last = piece.offset, piece.data, piece.last

        def write() -> Staged:
            staged.write_at(offset, data)
            if last:
                staged.finish()
            return staged

        def written(_: Staged) -> dict[str, Any]:
            self.session.piece_written(key, last=last)
            if last:
                self.staged.pop(key, None)
                staged.commit()  # in place as the answer goes: as for a one-message put
            return {"bytes": offset + len(data)}

        def failed() -> None:
            self.session.transfer_failed(key)
            self.staged.pop(key, None)
            staged.discard()

        self.spawn_task(req, self._file_io(req, write, written, on_failure=failed))

    def op_get(self, req: wire.Request) -> None:
        get = wire.GetMessage.read(req.body)
        located = self._located(get.path)
        if not self.session.admit(req, new=not get.offset):  # later pieces finish a get
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
            self._failed(req)
            self.carry_out()
        else:
            self.finish(req, body)
            return
        if on_failure is not None:
            on_failure()

    def op_sysinfo(self, req: wire.Request) -> None:
        if not self.session.admit(req):
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
        warm = self.warm
        counters = dict(
            self.counters,
            **{"warm.taken": warm.taken, "warm.empty": warm.empty, "warm.too-long": warm.too_long},
        )
        self.session.pong(req, wire.PingMessage.read(req.body).ids, counters)


def installed_version() -> str:
    """The release installed, as pip recorded it (a wheel built for a rehearsal may carry a
    local version, 0.2.0+b, that the source's __version__ does not)."""
    try:
        return importlib.metadata.version("zcl")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return __version__


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
        return wire.FolderListing(outcome.mode, tuple(outcome.entries)).body()
    return wire.FilePiece(outcome.data, outcome.size, outcome.mode).body()


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
