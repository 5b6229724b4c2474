"""Node agents as real processes, and executors and raw controllers that talk to them."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zmq

from cluster_patterns import processes
from zcl import agent_wire as wire
from zcl import cli, keys
from zcl.circuit_breaker import CircuitBreaker
from zcl.executor_options import ZmqExecutorOptions
from zcl.ssh_context import NodeExecutorSSH
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl_lab.openssh_server import OpenSshServer

AGENT = "zcl.agent.node_agent"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_agent(
    keydir: Path | None, *args: str, bind: str = "tcp://127.0.0.1:*"
) -> Iterator[processes.Child]:
    """An agent process for node1 (CurveZMQ with `keydir`'s keys, or --insecure without);
    put/get reach only the --file-root folders `args` name."""
    key_args = ["--keys", str(keys.node_dir(keydir, "node1"))] if keydir else ["--insecure"]
    with processes.Roles(AGENT) as roles:
        yield roles.spawn("agent", "--bind", bind, *key_args, *args)


def executor(
    endpoint: str,
    keydir: Path,
    controller: str = "runner",
    breaker: CircuitBreaker | None = None,
    **options: Any,
) -> ZmqNodeExecutor:
    """An executor to "node1" with `controller`'s keys; `options` are ZmqExecutorOptions'."""
    controller_keys = keys.load_controller_keys(keys.controller_dir(keydir, controller))
    return ZmqNodeExecutor(
        "node1", endpoint, controller_keys, breaker=breaker, options=ZmqExecutorOptions(**options)
    )


@contextlib.asynccontextmanager
async def both_transports(
    sshd: OpenSshServer, keydir: Path, *agent_args: str
) -> AsyncIterator[dict[str, NodeExecutorSSH | ZmqNodeExecutor]]:
    """The same node reached both ways: over SSH, and through an agent on this machine."""
    with running_agent(keydir, *agent_args) as agent:
        async with (
            NodeExecutorSSH.for_node(sshd.node("node1")) as over_ssh,
            executor(agent.endpoint, keydir) as over_zmq,
        ):
            yield {"ssh": over_ssh, "zmq": over_zmq}


class RawController:
    """A DEALER speaking the agent's wire format by hand, to send what our executor never would."""

    def __init__(
        self, ctx: cli.Ctx, endpoint: str, keydir: Path, controller_name: str = "runner",
        **options: int,
    ) -> None:  # fmt: skip
        controller = keys.load_controller_keys(keys.controller_dir(keydir, controller_name))
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        for name, value in options.items():
            self.sock.setsockopt(getattr(zmq, name.upper()), value)
        self.sock.curve_publickey, self.sock.curve_secretkey = controller.public, controller.secret
        self.sock.curve_serverkey = controller.agent_key("node1")
        self.sock.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def request(self, request_id: bytes, operation: bytes, body: dict[str, Any]) -> None:
        self.send(*wire.request(request_id, operation, body))

    def reply(self, timeout_ms: int = 5000) -> wire.Reply:
        if not self.sock.poll(timeout_ms):
            raise TimeoutError(f"no reply within {timeout_ms} ms")
        return wire.parse_reply(self.sock.recv_multipart())

    def counters(self) -> dict[str, int]:
        self.request(b"counters", wire.PING, {"ids": []})
        while (answer := self.reply()).request_id != b"counters":
            pass
        return dict(answer.body()["counters"])


@contextmanager
def raw_controller(keydir: Path, *agent_args: str) -> Iterator[RawController]:
    """A RawController talking to its own agent (started with `agent_args`), closed on exit."""
    with running_agent(keydir, *agent_args) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        yield raw
        raw.sock.close(linger=0)
