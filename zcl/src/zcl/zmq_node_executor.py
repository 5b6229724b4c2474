"""NodeExecutorProtocol over ZeroMQ: what replaces cluster_runner's NodeExecutorSSH.

One DEALER per node carries every command to the node agent, many in flight at once, each
tagged with a request id; one reader task hands each reply to the call waiting for it.

What can go wrong, and what the caller sees (never a hang):
- the command runs past `timeout_s`: the agent kills its process group -> CommandTimeoutError;
- the awaiting task is cancelled: a cancel goes to the agent, which kills the process group;
- the agent stops answering (dead, frozen, unreachable): while calls wait, the executor pings
  every `heartbeat_s`, and when the agent's silence breaks its learned rhythm
  (zcl.heartbeat) every waiting call fails with TransportError;
- the agent restarted, or a reconnect lost requests: each ping lists the ids in flight and the
  agent names those it does not know; they fail with TransportError saying so;
- nothing accepts the connection (refused, unreachable): waiting calls fail with TransportError
  at once, as over SSH;
- the agent refuses our key, or its key is not the pinned one: the CurveZMQ handshake fails and
  waiting calls fail with TransportError at once; so do they when our key is revoked while we
  are connected (the agent answers `key-refused`).
After any transport failure the socket is replaced, so a request we gave up on can never run
later, and a circuit breaker per node (circuit_breaker.py) makes a failing node fail fast.

    executor = ZmqNodeExecutor("node1", "tcp://node1:5560", load_controller_keys(folder))
    result = await executor.run("nvidia-smi -L", timeout_s=30)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from zcl import agent_wire as wire
from zcl.circuit_breaker import CircuitBreaker
from zcl.errors import (
    AgentDrainingError,
    CircuitOpenError,
    CommandTimeoutError,
    ConfigurationError,
    ExecutorError,
    InvalidRequestError,
    RemoteError,
    RequestTooLargeError,
    TransportError,
    WireError,
)
from zcl.executor_base import NodeExecutorBase, Sink
from zcl.executor_options import ZmqExecutorOptions
from zcl.executor_session import (
    STREAM_WINDOW,
    Answered,
    Draining,
    Event,
    ExecutorSession,
    LinkFailed,
    Lost,
    Output,
    Ping,
)
from zcl.keys import ControllerKeys
from zcl.loop_socket import LoopSocket
from zcl.output_stream import CommandOutput
from zcl.protocols import (
    UNSAFE_MODE_BITS,
    CommandResult,
    NodeExecutorProtocol,
    OutputCallback,
    Progress,
    RunRequest,
    Stream,
    SystemConfig,
    checked_put,
    kept_output,
    ran_over,
)
from zcl.run_options import MAX_KILL_GRACE_S
from zcl.wire import recv_now

log = logging.getLogger("zcl.zmq_node_executor")  # its module path, also under python -m
MiB = 1024 * 1024
HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the agent refused our key (not in its authorized_keys)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "CurveZMQ handshake failed (wrong pinned agent key?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "CurveZMQ handshake failed (wrong pinned agent key?)",
}


PIECE_BYTES = 1024 * 1024  # files travel in pieces of this size
# Receipts of replies read wait to go back with the next request or heartbeat, or alone once
# this much (or a message's most) has been read: well inside the agent's least unread budget.
RETURN_RECEIPTS_BYTES = 256 * 1024
RECEIPTS_ENVELOPE = wire.MAX_RECEIPTS * 10  # the most a request's `read` adds to it, in bytes


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as found:
        return sorted(found, key=lambda entry: entry.name)


@dataclass
class _Call:
    future: asyncio.Future[wire.Reply]
    on_output: OutputCallback | None = None
    reader: CommandOutput | None = None  # stream(): credited as its loop takes each chunk
    output: dict[Stream, list[bytes]] = field(default_factory=lambda: {"stdout": [], "stderr": []})


class _Link:
    """One DEALER connection to the agent, with its monitor; replaced after a failure."""

    def __init__(self, executor: ZmqNodeExecutor) -> None:
        keys = executor.keys
        server_key = None if keys is None else keys.agent_key(executor.node_id)  # before a socket
        sock = executor.ctx.socket(zmq.DEALER)
        sock.linger = 500  # a cancel sent just before close() still goes out
        sock.maxmsgsize = executor.max_message_bytes
        # A node that comes back (a healed partition, a restarted agent) is dialled again
        # within half a second: libzmq's redial interval is capped there, and one TCP connect
        # attempt may take that long (else a SYN lost in a partition waits for TCP's retries).
        sock.reconnect_ivl, sock.reconnect_ivl_max = 100, 500
        sock.connect_timeout = 500
        if keys is not None and server_key is not None:
            sock.curve_publickey, sock.curve_secretkey = keys.public, keys.secret
            sock.curve_serverkey = server_key
        self.handshaken = False  # until then nothing we sent can have reached the agent
        self.receipts: list[bytes] = []  # of replies read on this connection, not yet returned
        self.receipt_bytes = 0
        self.draining = False  # the agent said it is stopping: nothing more is started here
        try:
            monitor = sock.get_monitor_socket(
                sum(HANDSHAKE_FAILURES)
                | zmq.EVENT_HANDSHAKE_SUCCEEDED
                | zmq.EVENT_CONNECT_RETRIED
                | zmq.EVENT_DISCONNECTED
            )
        except zmq.ZMQError:
            sock.close(linger=0)  # a socket left open would hold the context's term() forever
            raise
        self.monitor = LoopSocket(monitor, lambda frames: executor.on_event(self, frames), recv_now)
        self.dealer = LoopSocket(sock, executor.on_reply, recv_now)
        sock.connect(executor.endpoint)

    def send(self, frames: list[bytes]) -> None:
        self.dealer.send(frames)

    def read(self, reply: wire.Reply, size: int) -> bool:
        """Note a reply taken off the socket; True when its receipts should go back now."""
        receipt = reply.receipt_to_return()
        if receipt is None:
            return False
        self.receipts.append(receipt)
        self.receipt_bytes += size
        return (
            self.receipt_bytes >= RETURN_RECEIPTS_BYTES or len(self.receipts) >= wire.MAX_RECEIPTS
        )

    def request(self, request_id: bytes, operation: bytes, body: dict[str, Any]) -> None:
        """Send a request carrying receipts not yet returned, as many as one message may
        (kept if it cannot go: a receipt lost is budget the agent never gives back)."""
        returned = self.receipts[: wire.MAX_RECEIPTS]
        if returned:
            body = dict(body, read=returned)
        self.send(wire.request(request_id, operation, body))
        del self.receipts[: len(returned)]
        if not self.receipts:
            self.receipt_bytes = 0

    def catch_up(self) -> None:
        """Take in replies and events that have arrived but not been handled yet: a drain
        notice, then the disconnection that follows it."""
        self.dealer.read_waiting()
        self.monitor.read_waiting()

    def close(self, *, discard: bool = False) -> None:
        """`discard`: what is still queued is dropped, never delivered. A socket closed with
        a linger goes on dialling and would hand a request we gave up on to whichever agent
        answers next (one restarted on the same port), running it after we said it never ran."""
        if discard:
            self.dealer.sock.linger = 0
        with contextlib.suppress(zmq.ZMQError):
            self.dealer.sock.disable_monitor()
        self.monitor.close()
        self.dealer.close()


class ZmqNodeExecutor(NodeExecutorBase):
    """Commands and files on one node, through its agent. Use in one event loop."""

    def __init__(
        self,
        node_id: str,
        endpoint: str,
        keys: ControllerKeys | None,
        *,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        breaker: CircuitBreaker | None = None,
        options: ZmqExecutorOptions | None = None,
    ) -> None:
        options = options or ZmqExecutorOptions()
        self.node_id, self.endpoint, self.keys = node_id, endpoint, keys
        if keys is not None and node_id not in keys.known_hosts:  # before any socket exists
            raise ConfigurationError(
                node_id, f"no pinned key for node {node_id!r} in the controller's known_hosts"
            )
        self.own_ctx = ctx is None
        self.ctx = ctx if ctx is not None else zmq.Context()
        self.options = options
        self.heartbeat_s, self.agent_silence_s = options.heartbeat_s, options.agent_silence_s
        self.grace_s = options.grace_s
        self.breaker = breaker or CircuitBreaker()
        self.max_message_bytes = options.max_message_bytes
        # More commands than the agent runs at once (its --max-concurrent) wait here, in order,
        # instead of coming back "busy".
        self.slots = asyncio.Semaphore(options.max_in_flight)
        self.calls: dict[bytes, _Call] = {}
        # The rules (incarnation, liveness, limits, credits): no socket, no clock of its own.
        self.session = ExecutorSession(time.monotonic(), options.agent_silence_s, endpoint)
        self.link: _Link | None = None
        self.beat: asyncio.Task[None] | None = None
        self.closed = False
        self.last_failure: str | None = None  # why the last connection was given up

    # -- the contract ------------------------------------------------------------------------

    async def _run(self, request: RunRequest, sink: Sink) -> CommandResult:
        """The request as one RUN to the agent; a stream's output is credited as its loop
        takes each chunk (output_stream.py), so a slow loop slows the command."""
        output, on_output = (sink, None) if isinstance(sink, CommandOutput) else (None, sink)
        command, options = request.command, request.options
        streaming = sink is not None
        # The envelope, and the receipts a request may carry back.
        size = len(request.script) + len(options.input or b"") + 4096 + RECEIPTS_ENVELOPE
        await self._within_limit("max_message_bytes", size, "its stdin and command")
        if options.max_output_bytes is not None:
            await self._within_limit("max_output_bytes", options.max_output_bytes, "the cap asked")
        run = wire.RunMessage(
            command, options, stream=streaming, window=STREAM_WINDOW if streaming else None
        )  # beyond the window the agent waits for our credit
        # The grace the agent grants at most (its --max-kill-grace): more asked waits no longer.
        most = (self.session.agent_limits or {}).get("max_kill_grace_s", MAX_KILL_GRACE_S)
        grace = min(options.kill_grace_s or 0, most)
        timeout_s = options.timeout_s
        wait_s = None if timeout_s is None else timeout_s + grace + self.grace_s
        call = _Call(asyncio.get_running_loop().create_future(), on_output, output)
        async with self.slots:
            reply = await self._request(wire.RUN, run.body(), call, wait_s)
        try:
            done = wire.RunDone.read(reply.body())
        except WireError as exc:
            raise RemoteError(self.node_id, f"the agent's result does not parse: {exc}") from None
        stdout, stderr = (
            (reply.frames[1], reply.frames[2]) if len(reply.frames) == 3 else (b"", b"")
        )
        if streaming:
            stdout = b"".join(call.output["stdout"])
            stderr = b"".join(call.output["stderr"])
        if done.timed_out:
            message = ran_over(command, timeout_s)
            raise CommandTimeoutError(self.node_id, message, stdout=stdout, stderr=stderr)
        if done.cancelled:
            raise RemoteError(self.node_id, f"{command!r} was killed by the agent (draining)")
        result = CommandResult(
            node_id=self.node_id,
            command=command,
            exit_status=done.exit_status,
            stdout=stdout,
            stderr=stderr,
            duration_s=done.duration_s,
            truncated=done.truncated,
            transport="zmq",
        )
        limit = options.output_limit if done.output_limit is None else done.output_limit
        return kept_output(result, limit, options.truncate)

    async def _within_limit(self, name: str, value: int, what: str) -> None:
        """Refuse here, before sending, what the agent would refuse or libzmq would drop. The
        agent's limits come with its pongs; a request past what may be sent unasked waits for
        one, which also proves the agent is there."""
        if self.session.agent_limits is None and (
            name != "max_message_bytes" or value > wire.UNASKED_REQUEST_BYTES
        ):
            await self.ping()
        most = (self.session.agent_limits or {}).get(name)
        if isinstance(most, int) and value > most:
            option = "--" + name.replace("_", "-")
            raise RequestTooLargeError(
                self.node_id, f"{what}: {value} bytes, over the agent's {option} ({most})"
            )

    async def put_file(
        self,
        local_path: Path,
        remote_path: str,
        *,
        mode: int | None = None,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        if checked_put(self.node_id, local_path, mode):
            await self._put_folder(local_path, remote_path, preserve_mode, progress)
            return
        await self._put_one(local_path, remote_path, mode, preserve_mode, progress)

    async def _put_folder(
        self, local: Path, remote: str, preserve_mode: bool, progress: Progress | None
    ) -> None:
        """The folder, then what is in it; links to folders and special files are skipped,
        a link to a file is sent as the file."""
        mode = stat.S_IMODE(local.stat().st_mode) if preserve_mode else None
        await self._simple(wire.PUT, wire.PutMessage(remote, mode, folder=True).body())
        for entry in await asyncio.to_thread(_sorted_entries, local):
            below = f"{remote.rstrip('/')}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                await self._put_folder(Path(entry.path), below, preserve_mode, progress)
            elif entry.is_file():
                await self._put_one(Path(entry.path), below, None, preserve_mode, progress)

    async def _put_one(
        self,
        local: Path,
        remote: str,
        mode: int | None,
        preserve_mode: bool,
        progress: Progress | None,
    ) -> None:
        """One message for a small file; else a transfer, a piece at a time, so neither side
        holds the file whole (the agent refuses a size over its limit before any piece)."""
        try:
            source = await asyncio.to_thread(open, local, "rb")
        except OSError as exc:
            raise InvalidRequestError(self.node_id, f"{local}: {exc.strerror}") from None
        with source:
            info = os.fstat(source.fileno())
            if mode is None and preserve_mode:
                mode = stat.S_IMODE(info.st_mode)
            if info.st_size <= PIECE_BYTES:
                data = await asyncio.to_thread(source.read, PIECE_BYTES)
                await self._simple(wire.PUT, wire.PutMessage(remote, mode, data=data).body())
                if progress is not None:
                    progress(remote, len(data), len(data))
                return
            size = info.st_size
            await self._within_limit("max_file_bytes", size, f"{local}")
            opening = wire.PutMessage(remote, mode, size=size).body()
            handle = (await self._simple(wire.PUT, opening))["transfer"]
            offset = 0
            while offset < size:
                piece = await asyncio.to_thread(source.read, min(PIECE_BYTES, size - offset))
                if not piece:
                    raise InvalidRequestError(self.node_id, f"{local} shrank while it was sent")
                last = offset + len(piece) == size
                write = wire.WriteMessage(handle, offset, piece, last)
                await self._simple(wire.WRITE, write.body())
                offset += len(piece)
                if progress is not None:
                    progress(remote, offset, size)

    async def get_file(
        self,
        remote_path: str,
        local_path: Path,
        *,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        first = await self._get_piece(remote_path, 0)
        if isinstance(first, wire.FolderListing):
            await self._get_folder(remote_path, local_path, first, preserve_mode, progress)
        else:
            await self._get_one(remote_path, local_path, first, preserve_mode, progress)

    async def _get_piece(self, remote: str, offset: int) -> wire.FilePiece | wire.FolderListing:
        body = await self._simple(wire.GET, wire.GetMessage(remote, offset, PIECE_BYTES).body())
        try:
            return wire.read_got(body)
        except WireError as exc:  # what an agent sends is input too: never a path outside
            raise RemoteError(self.node_id, f"{remote}: {exc.detail}") from None

    async def _get_folder(
        self,
        remote: str,
        local: Path,
        listing: wire.FolderListing,
        preserve_mode: bool,
        progress: Progress | None,
    ) -> None:
        try:
            local.mkdir(exist_ok=True)
            if preserve_mode:
                local.chmod(listing.mode & 0o7777 & ~UNSAFE_MODE_BITS)
        except OSError as exc:
            raise InvalidRequestError(self.node_id, f"{local}: {exc.strerror}") from None
        for name, kind, _, _ in listing.entries:  # names checked by read_got: no "/", no ".."
            if kind not in ("file", "folder"):
                continue  # links, devices, sockets: not copied, as the put side skips them
            below = f"{remote.rstrip('/')}/{name}"
            got = await self._get_piece(below, 0)
            if isinstance(got, wire.FolderListing):
                await self._get_folder(below, local / name, got, preserve_mode, progress)
            else:
                await self._get_one(below, local / name, got, preserve_mode, progress)

    async def _get_one(
        self,
        remote: str,
        local: Path,
        first: wire.FilePiece,
        preserve_mode: bool,
        progress: Progress | None,
    ) -> None:
        """Pieces into a temporary file beside the target, renamed into place at the end."""
        temporary = local.with_name(f".{local.name}.{secrets.token_hex(8)}.partial")
        try:
            out = await asyncio.to_thread(open, temporary, "xb")
        except OSError as exc:
            raise InvalidRequestError(self.node_id, f"{local}: {exc.strerror}") from None
        try:
            with out:
                piece: wire.FilePiece | wire.FolderListing = first
                size, offset = first.size, 0
                while isinstance(piece, wire.FilePiece):
                    await asyncio.to_thread(out.write, piece.data)
                    offset += len(piece.data)
                    if progress is not None:
                        progress(remote, offset, size)
                    if offset >= size or not piece.data:
                        break
                    piece = await self._get_piece(remote, offset)
                else:
                    raise RemoteError(self.node_id, f"{remote} became a folder while it was read")
            if preserve_mode:
                temporary.chmod(first.mode & 0o7777 & ~UNSAFE_MODE_BITS)
            temporary.replace(local)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def system_config(self) -> SystemConfig:
        return SystemConfig.from_dict((await self._simple(wire.SYSINFO, {}))["system"])

    async def ping(self) -> dict[str, Any]:
        """The agent's view: commands running, its counters, the round trip in seconds."""
        started = time.monotonic()
        body = await self._simple(wire.PING, wire.PingMessage().body())
        return dict(body, round_trip_s=time.monotonic() - started)

    async def __aenter__(self) -> ZmqNodeExecutor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail_all(TransportError(self.node_id, "the executor was closed"))
        self._drop_link()
        if self.beat is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.beat
        if self.own_ctx:
            self.ctx.term()

    # -- requests and replies ----------------------------------------------------------------

    async def _simple(self, operation: bytes, body: dict[str, Any]) -> dict[str, Any]:
        call = _Call(asyncio.get_running_loop().create_future())
        return (await self._request(operation, body, call, None)).body()

    async def _request(
        self, operation: bytes, body: dict[str, Any], call: _Call, wait_s: float | None
    ) -> wire.Reply:
        if self.closed:
            raise TransportError(self.node_id, "the executor is closed", may_have_run=False)
        if not self.breaker.allow():
            raise CircuitOpenError(
                self.node_id,
                f"circuit open after {self.breaker.failures} transport failures; "
                f"next try in {self.breaker.retry_in():.1f} s",
            )
        if self.link is not None:
            self.link.catch_up()  # an agent that is stopping may have said so already
        link = self._ensure_link()
        if not self.session.may_start(operation, body, draining=link.draining):
            # Told the agent we start nothing more here; SSH (the fallback) may run it.
            raise AgentDrainingError(self.node_id, "the agent is shutting down (draining)")
        request_id = self.session.next_id()
        if not self.calls:
            self.session.started_waiting(time.monotonic())
        self.calls[request_id] = call
        try:
            link.request(request_id, operation, body)
        except zmq.Again:
            self.calls.pop(request_id)
            # libzmq drops the pipe of a connection it gave up on (a refused key): its monitor
            # event may have come in since the look above, and it says why.
            link.catch_up()
            if self.link is not link and self.last_failure is not None:
                raise TransportError(self.node_id, self.last_failure, may_have_run=False) from None
            self.breaker.record_failure()
            raise TransportError(
                self.node_id, "send queue full: the agent is not reading", may_have_run=False
            ) from None
        self._start_beating()
        try:
            reply = await asyncio.wait_for(call.future, wait_s)
        except TimeoutError:
            self._cancel_remote(request_id)
            raise CommandTimeoutError(self.node_id, f"no result {wait_s} s after sending") from None
        except asyncio.CancelledError:
            self._cancel_remote(request_id)
            self.breaker.abandon_probe()
            raise
        except TransportError:
            self.breaker.record_failure()
            raise
        finally:
            self._call_ended(request_id)
        self.breaker.record_success()
        if reply.kind == wire.ERROR:
            raise self._refusal(wire.ErrorReply.read(reply.body()))
        return reply

    def _refusal(self, error: wire.ErrorReply) -> ExecutorError:
        """The error for the agent's refusal of one request."""
        if error.code == wire.ErrorCode.SHUTTING_DOWN:  # refused before it began: safe elsewhere
            return AgentDrainingError(self.node_id, "the agent is shutting down (draining)")
        if error.code == wire.ErrorCode.OVER_LIMIT:
            return RequestTooLargeError(self.node_id, error.reason)
        return RemoteError(self.node_id, f"{error.code}: {error.reason}")

    def _cancel_remote(self, request_id: bytes) -> None:
        if self.link is not None:
            cancel = wire.request(
                self.session.next_id(),
                wire.CANCEL,
                wire.CancelMessage(request_id).body(),
            )
            with contextlib.suppress(zmq.ZMQError):
                self.link.send(cancel)

    def _ensure_link(self) -> _Link:
        if self.link is None:
            try:
                self.link = _Link(self)
            except zmq.ZMQError as exc:  # out of sockets or descriptors: this node, not the run
                reason = zmq.strerror(exc.errno) if exc.errno is not None else str(exc)
                raise TransportError(
                    self.node_id, f"cannot open a socket: {reason}", may_have_run=False
                ) from None
        return self.link

    def _drop_link(self, *, discard: bool = False) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close(discard=discard)
        if self.beat is not None and self.beat is not asyncio.current_task():
            self.beat.cancel()

    def _transport_failed(self, reason: str) -> None:
        """Fail every waiting call and replace the socket, so nothing we gave up on runs later."""
        log.warning("%s: %s", self.node_id, reason)
        self.last_failure = reason
        delivered = self.link is not None and self.link.handshaken
        self._fail_all(TransportError(self.node_id, reason, may_have_run=delivered))
        self.session.reset(time.monotonic())  # the agent that answers next is new to us
        self._drop_link(discard=True)

    def _fail_all(self, error: ExecutorError) -> None:
        for call in self.calls.values():
            if not call.future.done():
                call.future.set_exception(error)
        self.calls.clear()

    def on_reply(self, frames: list[bytes]) -> None:
        try:
            reply = wire.parse_reply(frames)
        except WireError:
            log.warning("%s: dropped a malformed reply", self.node_id)
            return
        if self.link is not None and self.link.read(reply, sum(map(len, frames))):
            self._return_receipts()
        for event in self.session.receive(reply, time.monotonic()):
            self._apply(event)

    def _apply(self, event: Event) -> None:
        """What the session decided, done to the futures and the socket."""
        if isinstance(event, Answered):
            call = self.calls.get(event.request_id)
            if call is not None and not call.future.done():  # else it gave up meanwhile
                call.future.set_result(event.reply)
        elif isinstance(event, Output):
            self._deliver(event)
        elif isinstance(event, Lost):
            reason = "the agent does not know this command (lost with a reconnect)"
            for request_id in event.request_ids:
                call = self.calls.pop(request_id, None)
                if call is not None and not call.future.done():
                    call.future.set_exception(TransportError(self.node_id, reason))
        elif isinstance(event, Draining):
            self._draining()
        elif isinstance(event, LinkFailed):
            refused = None if event.revoked is None else self.calls.pop(event.revoked, None)
            if refused is not None and not refused.future.done():
                # The refused request itself says whether it had started; one that had not
                # may run elsewhere.
                error = TransportError(
                    self.node_id, event.reason, may_have_run=event.started is not False
                )
                refused.future.set_exception(error)
            self._transport_failed(event.reason)

    def _deliver(self, event: Output) -> None:
        call = self.calls.get(event.request_id)
        if call is None or call.future.done():
            return  # output of a call that gave up (cancelled, timed out)
        call.output[event.stream].append(event.data)
        if call.reader is not None:
            if call.reader.on_consumed is None:
                rid = event.request_id
                call.reader.on_consumed = lambda n: self._credit(rid, n)
            call.reader.feed(event.stream, event.data)
        elif call.on_output is not None:
            call.on_output(event.stream, event.data)
            self._credit(event.request_id, len(event.data))

    def _draining(self) -> None:
        """The agent is stopping: promise it (a PING under DRAIN_ID) to start nothing more on
        this connection, so it can close once it has answered all we sent. New calls fail with
        AgentDrainingError until the connection ends; the next one then dials afresh."""
        link = self.link
        if link is None or link.draining:
            return
        link.draining = True
        log.info("%s: the agent is draining; new calls go elsewhere", self.node_id)
        with contextlib.suppress(zmq.ZMQError):
            link.send(wire.request(wire.DRAIN_ID, wire.PING, wire.PingMessage().body()))

    def _credit(self, request_id: bytes, consumed: int) -> None:
        """Tell the agent what the reader has taken, when the session says it is time."""
        credit = self.session.consumed(request_id, consumed)
        if credit is not None and self.link is not None:
            with contextlib.suppress(zmq.Again):  # the window stays shut; the call's timeout holds
                self.link.send(wire.request(self.session.next_id(), wire.CREDIT, credit.body()))
                self.session.credited(request_id)

    def _call_ended(self, request_id: bytes) -> None:
        self.calls.pop(request_id, None)
        self.session.ended(request_id)
        if not self.calls:  # going idle: what was read need not wait for a next request
            self._return_receipts()

    def _return_receipts(self) -> None:
        """Receipts alone: the agent holds results back while too much we were sent is unread."""
        link = self.link
        if link is None or not link.receipts:
            return
        with contextlib.suppress(zmq.Again):  # they go with the next request or heartbeat
            link.request(self.session.next_id(), wire.READ, {})

    def _start_beating(self) -> None:
        if self.beat is None or self.beat.done():
            self.beat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        """While calls wait: ping (with their ids), and give up on an agent that went silent."""
        while self.calls and self.link is not None:
            await asyncio.sleep(self.heartbeat_s)  # the heartbeat rhythm, not synchronisation
            if not self.calls or self.link is None:
                return
            beat = self.session.tick(time.monotonic(), list(self.calls))
            if isinstance(beat, LinkFailed):
                self._transport_failed(beat.reason)
                return
            if isinstance(beat, Ping):
                with contextlib.suppress(zmq.Again):
                    ping = wire.PingMessage(beat.request_ids).body()
                    self.link.request(wire.HEARTBEAT_ID, wire.PING, ping)

    def on_event(self, link: _Link, frames: list[bytes]) -> None:
        """A socket-monitor event: a failed CurveZMQ handshake fails the waiting calls now."""
        event = int(parse_monitor_message(frames)["event"])
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            link.handshaken = True
            return
        if event == zmq.EVENT_DISCONNECTED:
            if self.link is link and link.handshaken:
                # The agent closed the connection (a stop, a crash): what waits here is lost.
                # A new socket for the next call, so a call made now is not queued for an
                # agent that may never come back: it dials afresh and, refused, fails at once
                # as never having run (the fallback's case).
                if self.calls:
                    self._transport_failed("the agent closed the connection")
                else:
                    self.session.reset(time.monotonic())
                    self._drop_link(discard=True)
            return
        if event == zmq.EVENT_CONNECT_RETRIED:
            # A connection attempt failed (refused, unreachable) before this link ever reached
            # the agent: the calls waiting on it fail now, as over SSH, not after a silence.
            if self.link is link and not link.handshaken and self.calls:
                self._transport_failed(
                    f"cannot connect to {self.endpoint} (refused or unreachable)"
                )
            return
        reason = HANDSHAKE_FAILURES.get(event)
        if reason is None or self.link is not link:
            return
        if self.keys is None:
            reason = "the agent wants CurveZMQ and this executor has no keys (keys=None)"
        if not self.calls:  # waiting calls each count their own failure
            self.breaker.record_failure()
        self._transport_failed(reason)


_conforms: type[NodeExecutorProtocol] = ZmqNodeExecutor
