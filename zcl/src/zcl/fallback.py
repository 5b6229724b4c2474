"""ZeroMQ first, SSH when ZeroMQ cannot serve: the automatic rollback, one node at a time.

`FallbackExecutor` sends a command over ZeroMQ unless the node's ZeroMQ circuit is open, and
over SSH when it is open or when the ZeroMQ attempt fails in transport (agent gone, key
refused, connection lost). Every result says which transport served it
(`CommandResult.transport`), so the journal shows where a run fell back.

A transport failure can come after the command started on the node (an agent killed mid-run):
then SSH does not start it again, and the caller gets a TransportError saying it may still run
(the restarted agent kills it; see node_agent's reaping), unless `allow_second_copy=True` says
a second copy is fine (idempotent probes). What never reached the agent (no connection, a
refused key, an open circuit, a draining agent) goes to SSH either way; `retry_over_ssh=False`
turns the fallback off for a call that must only ever use ZeroMQ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

from zcl.errors import TransportError
from zcl.output_stream import CommandOutput
from zcl.protocols import CommandResult, NodeExecutorProtocol, OutputCallback, SystemConfig
from zcl.retry import RetryPolicy, attempt_with_retry
from zcl.zmq_node_executor import ZmqNodeExecutor

log = logging.getLogger("zcl.fallback")  # its module path, also under python -m
T = TypeVar("T")


class FallbackExecutor:
    def __init__(
        self,
        zmq: ZmqNodeExecutor,
        ssh: NodeExecutorProtocol,
        retry_over_ssh: bool = True,
        *,
        allow_second_copy: bool = False,
    ):
        self.node_id, self.zmq, self.ssh, self.retry_over_ssh = (
            zmq.node_id,
            zmq,
            ssh,
            retry_over_ssh,
        )
        self.allow_second_copy = allow_second_copy
        self.served = {"zmq": 0, "ssh": 0}

    async def _zmq_else_ssh(
        self, over_zmq: Callable[[], Awaitable[T]], over_ssh: Callable[[], Awaitable[T]]
    ) -> T:
        if self.zmq.breaker.state != "open":
            try:
                answer = await over_zmq()
                self.served["zmq"] += 1
                return answer
            except TransportError as exc:
                if not self.retry_over_ssh:
                    raise
                if exc.may_have_run and not self.allow_second_copy:
                    raise TransportError(
                        self.node_id,
                        f"{str(exc).split(': ', 1)[-1]}; the command may still run on the node, "
                        "so it is not started again over SSH (allow_second_copy=True would)",
                    ) from exc
                log.warning("%s over SSH after a ZeroMQ failure: %s", self.node_id, exc)
        answer = await over_ssh()
        self.served["ssh"] += 1
        return answer

    async def run(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_output: OutputCallback | None = None,
        input: bytes | None = None,
        user: str | None = None,
        kill_grace_s: float | None = None,
        retry: RetryPolicy | None = None,
        max_output_bytes: int | None = None,
        truncate: bool = False,
    ) -> CommandResult:
        def over(executor: NodeExecutorProtocol) -> Callable[[], Awaitable[CommandResult]]:
            return lambda: executor.run(
                command,
                timeout_s=timeout_s,
                env=env,
                cwd=cwd,
                on_output=on_output,
                input=input,
                user=user,
                kill_grace_s=kill_grace_s,
                max_output_bytes=max_output_bytes,
                truncate=truncate,
            )

        # The policy wraps the whole ZeroMQ-else-SSH attempt: a retry tries ZeroMQ again first.
        return await attempt_with_retry(
            retry, lambda: self._zmq_else_ssh(over(self.zmq), over(self.ssh))
        )

    def stream(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        input: bytes | None = None,
        user: str | None = None,
        kill_grace_s: float | None = None,
        max_output_bytes: int | None = None,
        truncate: bool = False,
    ) -> CommandOutput:
        """Over ZeroMQ unless its circuit is open. Output already taken cannot be taken back,
        so a stream that fails half-way is not started again over SSH: the loop gets the error."""
        executor: NodeExecutorProtocol = self.zmq if self.zmq.breaker.state != "open" else self.ssh
        return executor.stream(
            command,
            timeout_s=timeout_s,
            env=env,
            cwd=cwd,
            input=input,
            user=user,
            kill_grace_s=kill_grace_s,
            max_output_bytes=max_output_bytes,
            truncate=truncate,
        )

    async def put_file(
        self,
        local_path: Path,
        remote_path: str,
        *,
        mode: int | None = None,
        preserve_mode: bool = False,
    ) -> None:
        options = {"mode": mode, "preserve_mode": preserve_mode}
        await self._zmq_else_ssh(
            lambda: self.zmq.put_file(local_path, remote_path, **options),  # type: ignore[arg-type]
            lambda: self.ssh.put_file(local_path, remote_path, **options),  # type: ignore[arg-type]
        )

    async def get_file(
        self, remote_path: str, local_path: Path, *, preserve_mode: bool = False
    ) -> None:
        await self._zmq_else_ssh(
            lambda: self.zmq.get_file(remote_path, local_path, preserve_mode=preserve_mode),
            lambda: self.ssh.get_file(remote_path, local_path, preserve_mode=preserve_mode),
        )

    async def system_config(self) -> SystemConfig:
        return await self._zmq_else_ssh(self.zmq.system_config, self.ssh.system_config)

    async def close(self) -> None:
        try:
            await self.zmq.close()
        finally:
            await self.ssh.close()


_conforms: type[NodeExecutorProtocol] = FallbackExecutor
