"""The SSH baseline, as cluster_runner has it today: NodeExecutorProtocol over asyncssh.

One persistent connection per node (opened on first use, reopened if it drops), every command
on its own channel of it; or, with `persistent=False`, a fresh connection per command, which is
what a runner without connection reuse pays. Environment and working directory travel as shell
code (protocols.shell_script): sshd passes on only the variables its AcceptEnv lists.

This is the yardstick for the ZeroMQ executor, so it is written as well as asyncssh allows, not
as a straw man: connection reuse, no pty, binary-safe output, SFTP for files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # asyncssh (2.24) reads cryptography's DSA names when it is imported, and cryptography 47
    # and later deprecate them with a warning: every CLI that loads this module printed it
    # before its own output. We use no DSA key; the warning is not ours to show.
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

from zcl.errors import (
    CommandTimeoutError,
    ExecutorError,
    InvalidRequestError,
    RemoteError,
    TransportError,
)
from zcl.executor_base import NodeExecutorBase, Sink
from zcl.executor_options import SshExecutorOptions
from zcl.operational_context import NodeFilter, OperationalContext, opened
from zcl.output_stream import CommandOutput
from zcl.protocols import (
    COMMAND_MARKER,
    AsyncJournalWriterProtocol,
    ClusterDescriptor,
    CommandResult,
    NodeDescriptor,
    NodeExecutorProtocol,
    Progress,
    RunRequest,
    Stream,
    SystemConfig,
    checked_put,
    kept_output,
    login_environment,
    ran_over,
    unsafe_modes,
)
from zcl.system_probe import PROBE_SCRIPT, parse_probe

KILL_TIMEOUT_S = 5.0  # for the command that kills a timed-out or cancelled one


class NodeExecutorSSH(NodeExecutorBase):
    def __init__(
        self,
        node_id: str,
        host: str,
        port: int = 22,
        *,
        username: str | None = None,
        client_key: str | None = None,
        known_hosts: str | None = None,
        skip_host_key_check: bool = False,
        options: SshExecutorOptions | None = None,
    ) -> None:
        options = options or SshExecutorOptions()
        self.node_id, self.host, self.port = node_id, host, port
        # The agent's --max-kill-grace on this side: a grace of 1e9 asked never killed.
        self.max_kill_grace_s = options.max_kill_grace_s
        self.connect_options: dict[str, Any] = {
            "username": username,
            "client_keys": [client_key] if client_key else None,
            "connect_timeout": options.connect_timeout_s,
        }
        # asyncssh checks host keys against ~/.ssh/known_hosts unless told otherwise; its
        # known_hosts=None means "check nothing", so None is passed only when asked by name.
        if skip_host_key_check:
            self.connect_options["known_hosts"] = None
        elif known_hosts is not None:
            self.connect_options["known_hosts"] = known_hosts
        self.persistent = options.persistent
        self.connections: dict[str | None, asyncssh.SSHClientConnection] = {}  # user -> it
        self.connecting = asyncio.Lock()
        # marker -> the connection its command runs on, and the call
        self.running: dict[str, tuple[asyncssh.SSHClientConnection, RunRequest]] = {}
        self.closed = False

    @classmethod
    def for_node(
        cls, node: NodeDescriptor, options: SshExecutorOptions | None = None
    ) -> NodeExecutorSSH:
        return cls(
            node.node_id,
            node.host,
            node.ssh_port,
            username=node.ssh_user,
            client_key=node.ssh_key_path,
            known_hosts=node.ssh_known_hosts_path,
            skip_host_key_check=node.ssh_skip_host_key_check,
            options=options,
        )

    async def _connect(self, user: str | None = None) -> asyncssh.SSHClientConnection:
        options = self.connect_options
        options = options if user is None else dict(options, username=user)
        try:
            return await asyncssh.connect(self.host, self.port, **options)
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(  # no connection, so no command started
                self.node_id, f"ssh to {self.host}:{self.port}: {exc}", may_have_run=False
            ) from None

    async def _connection(self, user: str | None = None) -> asyncssh.SSHClientConnection:
        """The open connection for `user` (None: the node's login), opened on first use."""
        async with self.connecting:  # one connection per node and user, even when many start
            conn = self.connections.get(user)
            if conn is None or conn.is_closed():
                conn = self.connections[user] = await self._connect(user)
            return conn

    async def _run(self, request: RunRequest, sink: Sink) -> CommandResult:
        """The request over one SSH channel; a stream's channel is not read while its loop is
        behind, so SSH's flow control holds the command's writes (output_stream.py)."""
        output, on_output = (sink, None) if isinstance(sink, CommandOutput) else (None, sink)
        # The marker every process the command starts inherits, so a kill can find them all
        # (the agent does the same): closing an SSH channel kills nothing. It is in the
        # environment /bin/sh starts with, so the shell itself is found too (its TERM trap
        # runs), and the command meets /bin/sh whatever the login shell is, as on the agent.
        marker = uuid.uuid4().hex
        # `env -i`: the command starts with a login's variables and nothing of sshd's (SSH_*,
        # MAIL, what AcceptEnv let in), the same environment the agent gives (protocols.py).
        login = login_environment("$USER", "$HOME", "$SHELL")
        variables = " ".join(
            f'{name}="{value}"' if value.startswith("$") else f"{name}={shlex.quote(value)}"
            for name, value in dict(login, LOGNAME="$LOGNAME").items()
        )
        script = (
            f"exec env -i {COMMAND_MARKER}={marker} {variables} sh -c {shlex.quote(request.script)}"
        )
        started = time.monotonic()
        user = request.options.user
        conn = await self._connection(user) if self.persistent else await self._connect(user)
        self.running[marker] = (conn, request)
        kept: dict[Stream, list[bytes]] = {"stdout": [], "stderr": []}  # as it comes
        finished = False
        try:

            async def deliver(stream: Stream, chunk: bytes) -> None:
                if output is not None:
                    await output.put(stream, chunk)  # waits while the reader is behind
                elif on_output is not None:
                    on_output(stream, chunk)

            streaming = on_output is not None or output is not None
            status, truncated = await self._stream(
                conn, script, request, kept, deliver if streaming else None
            )
            if status is None:  # the channel closed with no exit status: the connection broke
                raise TransportError(
                    self.node_id, "ssh: the connection ended before the command's exit status"
                )
            finished = True
        except TimeoutError:  # asyncssh.TimeoutError is one too
            message = ran_over(request.command, request.options.timeout_s)
            stdout, stderr = b"".join(kept["stdout"]), b"".join(kept["stderr"])
            raise CommandTimeoutError(self.node_id, message, stdout=stdout, stderr=stderr) from None
        except (OSError, asyncssh.Error) as exc:
            if self.closed:
                raise TransportError(self.node_id, "the executor was closed") from None
            raise TransportError(self.node_id, f"ssh: {exc}") from None
        finally:
            if self.running.pop(marker, None) is not None and not finished:
                # timed out, cancelled or failed: kill what it started, shielded from the
                # cancellation that may have brought us here
                await asyncio.shield(self._kill_remote(conn, marker, request))
            if not self.persistent:
                conn.close()
        if self.closed:
            raise TransportError(self.node_id, "the executor was closed")
        result = CommandResult(
            node_id=self.node_id,
            command=request.command,
            exit_status=status,
            stdout=b"".join(kept["stdout"]),
            stderr=b"".join(kept["stderr"]),
            duration_s=time.monotonic() - started,
            truncated=truncated,
            transport="ssh",
        )
        return kept_output(result, request.options.output_limit, request.options.truncate)

    async def _stream(
        self,
        conn: asyncssh.SSHClientConnection,
        script: str,
        request: RunRequest,
        kept: dict[Stream, list[bytes]],
        deliver: Callable[[Stream, bytes], Awaitable[None]] | None,
    ) -> tuple[int | None, bool]:
        """The command's output, read as it comes and kept in `kept` (and delivered) up to
        the request's cap, stdout and stderr together, as the agent does; the rest is read and
        dropped. Returns the exit status and whether anything was dropped."""
        # asyncssh sends no end of file after an empty input: /dev/null is the same
        stdin = asyncssh.PIPE if request.options.input else asyncssh.DEVNULL
        process = await conn.create_process(script, encoding=None, stdin=stdin)
        room = [request.options.output_limit]  # what may still be kept, both streams together
        dropped = [False]

        async def pump(name: Stream, reader: asyncssh.SSHReader[bytes]) -> None:
            while chunk := await reader.read(65536):
                if len(chunk) > room[0]:
                    chunk, dropped[0] = chunk[: room[0]], True
                room[0] -= len(chunk)
                if not chunk:
                    continue
                kept[name].append(chunk)
                if deliver is not None:
                    await deliver(name, chunk)

        async def feed(data: bytes) -> None:
            with contextlib.suppress(OSError, asyncssh.Error):  # it stopped reading: its choice
                process.stdin.write(data)
                await process.stdin.drain()
                process.stdin.write_eof()

        async with asyncio.timeout(request.options.timeout_s):
            pumps = [pump("stdout", process.stdout), pump("stderr", process.stderr)]
            if request.options.input:
                pumps.append(feed(request.options.input))
            await asyncio.gather(*pumps)
            await process.wait()
        return process.returncode, dropped[0]

    async def put_file(
        self,
        local_path: Path,
        remote_path: str,
        *,
        mode: int | None = None,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        folder = checked_put(self.node_id, local_path, mode)

        async def put(sftp: asyncssh.SFTPClient) -> None:
            await sftp.put(
                str(local_path),
                remote_path,
                recurse=folder,
                preserve=preserve_mode,
                progress_handler=_per_file(progress, remote_is_destination=True),
            )
            if mode is not None:
                await sftp.chmod(remote_path, mode)
            for path, safe in unsafe_modes(local_path) if preserve_mode else []:
                # SFTP preserved a set-id or others' write bit the agent would strip: strip it
                below = path.relative_to(local_path).as_posix()
                await sftp.chmod(remote_path if below == "." else f"{remote_path}/{below}", safe)

        await self._sftp("put", remote_path, put)  # a refusal is about the node's side

    async def get_file(
        self,
        remote_path: str,
        local_path: Path,
        *,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        async def get(sftp: asyncssh.SFTPClient) -> None:
            await sftp.get(
                remote_path,
                str(local_path),
                recurse=True,
                preserve=preserve_mode,
                progress_handler=_per_file(progress, remote_is_destination=False),
            )
            for path, safe in unsafe_modes(local_path) if preserve_mode else []:
                path.chmod(safe)  # a node's set-id or others' write bit is not kept here

        await self._sftp("get", remote_path, get)

    async def _sftp(
        self, verb: str, source: str, transfer: Callable[[asyncssh.SFTPClient], Awaitable[None]]
    ) -> None:
        conn = await self._connection()
        try:
            async with conn.start_sftp_client() as sftp:
                await transfer(sftp)
        except asyncssh.SFTPError as exc:
            raise RemoteError(self.node_id, f"{verb} {source}: {exc.reason}") from None
        except OSError as exc:  # the local side: a file that cannot be read or written
            raise InvalidRequestError(self.node_id, f"{exc.filename}: {exc.strerror}") from None
        except asyncssh.Error as exc:
            raise TransportError(self.node_id, f"ssh: {exc}") from None

    async def system_config(self) -> SystemConfig:
        result = await self.run(PROBE_SCRIPT, timeout_s=30)
        return parse_probe(result.text())

    async def __aenter__(self) -> NodeExecutorSSH:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _kill_remote(
        self, conn: asyncssh.SSHClientConnection, marker: str, request: RunRequest
    ) -> None:
        """Signal every process on the node whose environment carries the command's marker:
        SIGKILL, or SIGTERM, then SIGKILL for what is left after `kill_grace_s`. Over a new
        connection if the command's own dropped (sshd kills nothing when a connection ends)."""
        grace = min(request.options.kill_grace_s or 0, self.max_kill_grace_s)
        marked = (
            f"grep -lzx '{COMMAND_MARKER}={marker}' /proc/[0-9]*/environ 2>/dev/null"
            " | sed 's,^/proc/,,; s,/environ$,,'"
        )
        # SIGTERM goes to the process groups of the marked processes, each once, after they
        # are all found: what a TERM trap starts (in its group) is not terminated in turn.
        # A process's group is the third field after its name in /proc/PID/stat; dash's kill
        # takes a negative pid (a group) with no `--` before it.
        groups = (
            f"for p in $({marked}); do sed 's/.*) //' \"/proc/$p/stat\" 2>/dev/null "
            "| cut -d' ' -f3; done | sort -u"
        )
        kill_all = f'for p in $({marked}); do kill -KILL "$p" 2>/dev/null; done'
        if grace:
            steps = max(1, round(grace * 10))
            kill = (
                f'for g in $({groups}); do kill -TERM "-$g" 2>/dev/null; done; n=0; '
                f'while [ "$n" -lt {steps} ] && [ -n "$({marked})" ]; '
                f"do sleep 0.1; n=$((n+1)); done; {kill_all}; true"
            )
        else:
            kill = f"{kill_all}; true"
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError, ExecutorError):
            async with asyncio.timeout(KILL_TIMEOUT_S + grace):
                if conn.is_closed():
                    if self.closed:
                        return
                    conn = await self._connect(request.options.user)
                    try:
                        await conn.run(kill, stdin=asyncssh.DEVNULL)
                    finally:
                        conn.close()
                    return
                await conn.run(kill, stdin=asyncssh.DEVNULL)

    async def close(self) -> None:
        """Kill what still runs, then close the connections (the runs raise TransportError)."""
        self.closed = True
        running, self.running = dict(self.running), {}
        await asyncio.gather(*(self._kill_remote(c, m, r) for m, (c, r) in running.items()))
        connections, self.connections = list(self.connections.values()), {}
        for conn in connections:
            conn.close()
            await conn.wait_closed()


def _per_file(progress: Progress | None, *, remote_is_destination: bool) -> Any:
    """asyncssh's progress_handler(source, destination, copied, total) as our Progress,
    which names the file on the node."""
    if progress is None:
        return None

    def handler(source: bytes, destination: bytes, copied: int, total: int) -> None:
        remote = destination if remote_is_destination else source
        progress(os.fsdecode(remote), copied, total)

    return handler


@contextlib.asynccontextmanager
async def build_ssh_context(
    descriptor: ClusterDescriptor,
    filter_fn: NodeFilter | None,
    journal: AsyncJournalWriterProtocol,
    *,
    options: SshExecutorOptions | None = None,
) -> AsyncIterator[OperationalContext]:
    """cluster_runner's context today: every node reached over SSH."""
    context = OperationalContext(
        descriptor, filter_fn, journal, lambda node: NodeExecutorSSH.for_node(node, options)
    )
    async with opened(context):
        yield context


_conforms: type[NodeExecutorProtocol] = NodeExecutorSSH
