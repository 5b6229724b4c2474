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
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncssh

from cluster_sim.operational_context import NodeFilter, OperationalContext, opened
from cluster_sim.protocols import (
    COMMAND_MARKER,
    AsyncJournalWriterProtocol,
    ClusterDescriptor,
    CommandResult,
    CommandTimeoutError,
    NodeDescriptor,
    NodeExecutorProtocol,
    OutputCallback,
    RemoteError,
    SystemConfig,
    TransportError,
    checked_script,
    ran_over,
)
from cluster_sim.system_probe import PROBE_SCRIPT, parse_probe

CONNECT_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 5.0  # for the command that kills a timed-out or cancelled one


class NodeExecutorSSH:
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
        persistent: bool = True,
    ) -> None:
        self.node_id, self.host, self.port = node_id, host, port
        self.options: dict[str, Any] = {
            "username": username,
            "client_keys": [client_key] if client_key else None,
            "connect_timeout": CONNECT_TIMEOUT_S,
        }
        # asyncssh checks host keys against ~/.ssh/known_hosts unless told otherwise; its
        # known_hosts=None means "check nothing", so None is passed only when asked by name.
        if skip_host_key_check:
            self.options["known_hosts"] = None
        elif known_hosts is not None:
            self.options["known_hosts"] = known_hosts
        self.persistent = persistent
        self.connection: asyncssh.SSHClientConnection | None = None
        self.connecting = asyncio.Lock()
        self.running: dict[str, asyncssh.SSHClientConnection] = {}  # marker -> its connection
        self.closed = False

    @classmethod
    def for_node(cls, node: NodeDescriptor, persistent: bool = True) -> NodeExecutorSSH:
        return cls(
            node.node_id,
            node.host,
            node.ssh_port,
            username=node.ssh_user,
            client_key=node.ssh_key_path,
            known_hosts=node.ssh_known_hosts_path,
            skip_host_key_check=node.ssh_skip_host_key_check,
            persistent=persistent,
        )

    async def _connect(self) -> asyncssh.SSHClientConnection:
        try:
            return await asyncssh.connect(self.host, self.port, **self.options)
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(self.node_id, f"ssh to {self.host}:{self.port}: {exc}") from None

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self.connecting:  # one connection per node, even when many commands start
            if self.connection is None or self.connection.is_closed():
                self.connection = await self._connect()
            return self.connection

    async def run(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_output: OutputCallback | None = None,
    ) -> CommandResult:
        script = checked_script(self.node_id, command, timeout_s, env, cwd)
        # The marker every process the command starts inherits, so a kill can find them all
        # (the agent does the same): closing an SSH channel kills nothing.
        marker = uuid.uuid4().hex
        script = f"export {COMMAND_MARKER}={marker}; {script}"  # one line: line numbers stay
        started = time.monotonic()
        conn = await self._connection() if self.persistent else await self._connect()
        self.running[marker] = conn
        finished = False
        try:
            if on_output is None:
                done = await conn.run(
                    script, encoding=None, stdin=asyncssh.DEVNULL, timeout=timeout_s
                )
                stdout, stderr, status = _raw(done.stdout), _raw(done.stderr), done.returncode
            else:
                stdout, stderr, status = await self._stream(conn, script, timeout_s, on_output)
            finished = True
        except TimeoutError:  # asyncssh.TimeoutError is one too
            raise CommandTimeoutError(self.node_id, ran_over(command, timeout_s)) from None
        except (OSError, asyncssh.Error) as exc:
            if self.closed:
                raise TransportError(self.node_id, "the executor was closed") from None
            raise TransportError(self.node_id, f"ssh: {exc}") from None
        finally:
            if self.running.pop(marker, None) is not None and not finished:
                # timed out, cancelled or failed: kill what it started, shielded from the
                # cancellation that may have brought us here
                await asyncio.shield(self._kill_remote(conn, marker))
            if not self.persistent:
                conn.close()
        if self.closed:
            raise TransportError(self.node_id, "the executor was closed")
        return CommandResult(
            node_id=self.node_id,
            command=command,
            exit_status=status if status is not None else -1,
            stdout=stdout,
            stderr=stderr,
            duration_s=time.monotonic() - started,
            transport="ssh",
        )

    async def _stream(
        self,
        conn: asyncssh.SSHClientConnection,
        script: str,
        timeout_s: float | None,
        on_output: OutputCallback,
    ) -> tuple[bytes, bytes, int | None]:
        process = await conn.create_process(script, encoding=None, stdin=asyncssh.DEVNULL)
        kept: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

        async def pump(name: str, reader: asyncssh.SSHReader[bytes]) -> None:
            while chunk := await reader.read(65536):
                kept[name].append(chunk)
                on_output("stdout" if name == "stdout" else "stderr", chunk)

        async with asyncio.timeout(timeout_s):
            await asyncio.gather(pump("stdout", process.stdout), pump("stderr", process.stderr))
            await process.wait()
        return b"".join(kept["stdout"]), b"".join(kept["stderr"]), process.returncode

    async def put_file(self, local_path: Path, remote_path: str) -> None:
        await self._sftp("put", str(local_path), remote_path)

    async def get_file(self, remote_path: str, local_path: Path) -> None:
        await self._sftp("get", remote_path, str(local_path))

    async def _sftp(self, verb: str, source: str, target: str) -> None:
        conn = await self._connection()
        try:
            async with conn.start_sftp_client() as sftp:
                await (sftp.put if verb == "put" else sftp.get)(source, target)
        except asyncssh.SFTPError as exc:
            raise RemoteError(self.node_id, f"{verb} {source}: {exc.reason}") from None

    async def system_config(self) -> SystemConfig:
        result = await self.run(PROBE_SCRIPT, timeout_s=30)
        return parse_probe(result.text())

    async def __aenter__(self) -> NodeExecutorSSH:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _kill_remote(self, conn: asyncssh.SSHClientConnection, marker: str) -> None:
        """SIGKILL every process on the node whose environment carries the command's marker."""
        kill = (
            f"for f in $(grep -lzx '{COMMAND_MARKER}={marker}' /proc/[0-9]*/environ "
            '2>/dev/null); do p="${f#/proc/}"; kill -9 "${p%/environ}" 2>/dev/null; done; true'
        )
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            await asyncio.wait_for(conn.run(kill, stdin=asyncssh.DEVNULL), KILL_TIMEOUT_S)

    async def close(self) -> None:
        """Kill what still runs, then close the connection (the runs raise TransportError)."""
        self.closed = True
        running, self.running = dict(self.running), {}
        await asyncio.gather(*(self._kill_remote(c, m) for m, c in running.items()))
        if self.connection is not None:
            self.connection.close()
            await self.connection.wait_closed()
            self.connection = None


def _raw(output: bytes | str | None) -> bytes:
    """asyncssh types output as bytes or str; with encoding=None it is always bytes."""
    return output.encode() if isinstance(output, str) else output or b""


@contextlib.asynccontextmanager
async def build_ssh_context(
    descriptor: ClusterDescriptor,
    filter_fn: NodeFilter | None,
    journal: AsyncJournalWriterProtocol,
    *,
    persistent: bool = True,
) -> AsyncIterator[OperationalContext]:
    """cluster_runner's context today: every node reached over SSH."""
    context = OperationalContext(
        descriptor, filter_fn, journal, lambda node: NodeExecutorSSH.for_node(node, persistent)
    )
    async with opened(context):
        yield context


_conforms: type[NodeExecutorProtocol] = NodeExecutorSSH
