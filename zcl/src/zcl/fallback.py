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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from zcl.errors import TransportError
from zcl.executor_base import NodeExecutorBase, Sink
from zcl.output_stream import CommandOutput
from zcl.protocols import (
    CommandResult,
    NodeExecutorProtocol,
    Progress,
    RunRequest,
    SystemConfig,
)
from zcl.zmq_node_executor import ZmqNodeExecutor

log = logging.getLogger("zcl.fallback")  # its module path, also under python -m
T = TypeVar("T")


class FallbackExecutor(NodeExecutorBase):
    def __init__(
        self,
        zmq: ZmqNodeExecutor,
        ssh: NodeExecutorBase,
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

    async def _run(self, request: RunRequest, sink: Sink) -> CommandResult:
        """A stream goes over ZeroMQ unless its circuit is open: output already taken cannot be
        taken back, so a stream that fails half-way is not started again over SSH (the loop
        gets the error). A run goes over ZeroMQ, else SSH; a retry policy wraps the whole
        attempt (NodeExecutorBase.run), so a retry tries ZeroMQ again first."""
        if isinstance(sink, CommandOutput):
            open_circuit = self.zmq.breaker.state == "open"
            return await (self.ssh if open_circuit else self.zmq).run_request(request, sink)
        return await self._zmq_else_ssh(
            lambda: self.zmq.run_request(request, sink),
            lambda: self.ssh.run_request(request, sink),
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
        def over(executor: NodeExecutorBase) -> Callable[[], Awaitable[None]]:
            return lambda: executor.put_file(
                local_path, remote_path, mode=mode, preserve_mode=preserve_mode, progress=progress
            )

        await self._zmq_else_ssh(over(self.zmq), over(self.ssh))

    async def get_file(
        self,
        remote_path: str,
        local_path: Path,
        *,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        def over(executor: NodeExecutorBase) -> Callable[[], Awaitable[None]]:
            return lambda: executor.get_file(
                remote_path, local_path, preserve_mode=preserve_mode, progress=progress
            )

        await self._zmq_else_ssh(over(self.zmq), over(self.ssh))

    async def ping(self) -> dict[str, Any]:
        """The node's agent's answer to a ping (its incarnation, what runs, its limits), as
        ZmqNodeExecutor.ping gives it: SSH has no agent to ask, so a node whose agent does not
        answer raises TransportError here, even where its commands would go over SSH."""
        return await self.zmq.ping()

    async def system_config(self) -> SystemConfig:
        return await self._zmq_else_ssh(self.zmq.system_config, self.ssh.system_config)

    async def close(self) -> None:
        try:
            await self.zmq.close()
        finally:
            await self.ssh.close()


_conforms: type[NodeExecutorProtocol] = FallbackExecutor
