"""ZeroMQ first, SSH when ZeroMQ cannot serve: the automatic rollback, one node at a time.

`FallbackExecutor` sends a command over ZeroMQ unless the node's ZeroMQ circuit is open, and
over SSH when it is open or when the ZeroMQ attempt fails in transport (agent gone, key
refused, connection lost). Every result says which transport served it
(`CommandResult.transport`), so the journal shows where a run fell back.

A transport failure can come after the command started on the node (an agent killed mid-run),
so the SSH retry may run a command a second time: fine for idempotent perf tests and probes,
not for commands that must run at most once (pass `retry_over_ssh=False` for those; they then
fail with the ZeroMQ error and the caller decides).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from cluster_sim.protocols import (
    CommandResult,
    NodeExecutorProtocol,
    OutputCallback,
    SystemConfig,
    TransportError,
)
from cluster_sim.ssh_context import NodeExecutorSSH
from cluster_sim.zmq_node_executor import ZmqNodeExecutor

log = logging.getLogger("fallback")


class FallbackExecutor:
    def __init__(self, zmq: ZmqNodeExecutor, ssh: NodeExecutorSSH, retry_over_ssh: bool = True):
        self.node_id, self.zmq, self.ssh, self.retry_over_ssh = (
            zmq.node_id,
            zmq,
            ssh,
            retry_over_ssh,
        )
        self.served = {"zmq": 0, "ssh": 0}

    def _use_ssh(self) -> bool:
        return self.zmq.breaker.state == "open"

    async def run(
        self,
        command: str,
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_output: OutputCallback | None = None,
    ) -> CommandResult:
        if not self._use_ssh():
            try:
                result = await self.zmq.run(
                    command, timeout_s=timeout_s, env=env, cwd=cwd, on_output=on_output
                )
                self.served["zmq"] += 1
                return result
            except TransportError as exc:
                if not self.retry_over_ssh:
                    raise
                log.warning("%s over SSH after a ZeroMQ failure: %s", self.node_id, exc)
        result = await self.ssh.run(
            command, timeout_s=timeout_s, env=env, cwd=cwd, on_output=on_output
        )
        self.served["ssh"] += 1
        return result

    async def put_file(self, local_path: Path, remote_path: str) -> None:
        if self._use_ssh():
            return await self.ssh.put_file(local_path, remote_path)
        try:
            return await self.zmq.put_file(local_path, remote_path)
        except TransportError:
            return await self.ssh.put_file(local_path, remote_path)

    async def get_file(self, remote_path: str, local_path: Path) -> None:
        if self._use_ssh():
            return await self.ssh.get_file(remote_path, local_path)
        try:
            return await self.zmq.get_file(remote_path, local_path)
        except TransportError:
            return await self.ssh.get_file(remote_path, local_path)

    async def system_config(self) -> SystemConfig:
        if self._use_ssh():
            return await self.ssh.system_config()
        try:
            return await self.zmq.system_config()
        except TransportError:
            return await self.ssh.system_config()

    async def close(self) -> None:
        try:
            await self.zmq.close()
        finally:
            await self.ssh.close()


_conforms: type[NodeExecutorProtocol] = FallbackExecutor
