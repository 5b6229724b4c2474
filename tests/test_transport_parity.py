"""Both transports alike where the contract says so (issue 15, part 2): the same failure gives
the same error class and message, and a timeout or a cancel over SSH kills the command with
everything it started, as the agent does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from tests.agents import executor, running_agent
from tests.test_node_agent import wait_gone
from zcl.protocols import NodeExecutorProtocol
from zcl.ssh_context import NodeExecutorSSH
from zcl_lab.openssh_server import OpenSshServer

FAILURES: list[tuple[str, dict[str, Any]]] = [
    ("true", {"env": {"1BAD": "x"}}),
    ("true", {"env": {"A B": "x"}}),
    ("true", {"timeout_s": 0}),
    ("true", {"timeout_s": -1}),
    ("true", {"timeout_s": float("nan")}),
    ("sleep 5", {"timeout_s": 0.5}),
]


async def outcome(run: Awaitable[Any]) -> tuple[str, str]:
    """The error's class and its message without the node's name."""
    try:
        await asyncio.wait_for(run, 30)
    except Exception as exc:  # the point is to compare whatever comes
        return type(exc).__name__, str(exc).split(": ", 1)[-1]
    return "no error", ""


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_the_same_failures_are_the_same_errors_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    """A bad variable name was a local ValueError over SSH and a RemoteError over ZeroMQ;
    timeout_s=0 a CommandTimeoutError against a RemoteError; timeout messages differed, so the
    A/B comparison flagged every timeout."""
    async with NodeExecutorSSH.for_node(sshd.node("node1")) as over_ssh:
        with running_agent(keydir) as agent:
            async with executor(agent.endpoint, keydir) as over_zmq:
                for command, options in FAILURES:
                    both: list[NodeExecutorProtocol] = [over_ssh, over_zmq]
                    seen = [await outcome(e.run(command, **options)) for e in both]
                    assert seen[0] == seen[1], (command, options, seen)
                    assert seen[0][0] != "no error", (command, options)


async def started_pid(run: asyncio.Task[Any], pids: list[int], ready: asyncio.Event) -> int:
    await asyncio.wait_for(ready.wait(), 20)
    assert not run.done()
    return pids[0]


@pytest.mark.asyncio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["timeout", "cancel", "close"])
@pytest.mark.parametrize(
    "command",
    ["sleep 300 & echo $!; wait", "setsid sh -c 'echo $$; exec sleep 300' & wait"],
    ids=["child", "own-session"],
)
async def test_over_ssh_a_timeout_a_cancel_or_a_close_kills_what_the_command_started(
    sshd: OpenSshServer, how: str, command: str
) -> None:
    """They used to leave the remote processes running (3 left in the report)."""
    pids: list[int] = []
    ready = asyncio.Event()

    def note(_: str, data: bytes) -> None:
        pids.extend(int(word) for word in data.split())
        ready.set()

    over_ssh = NodeExecutorSSH.for_node(sshd.node("node1"))
    try:
        timeout = 2.0 if how == "timeout" else None
        run = asyncio.create_task(over_ssh.run(command, timeout_s=timeout, on_output=note))
        pid = await started_pid(run, pids, ready)
        if how == "cancel":
            run.cancel()
        elif how == "close":
            await over_ssh.close()
        with pytest.raises((Exception, asyncio.CancelledError)):
            await asyncio.wait_for(run, 30)
    finally:
        await over_ssh.close()
    assert await asyncio.to_thread(wait_gone, pid, 15), f"{how}: pid {pid} still runs"
