"""A kill always lands (issue 23, class 1): whatever grace a request asks, every way a command
is stopped ends in SIGKILL within the bound the agent sets (--max-kill-grace). A command that
ignores SIGTERM with kill_grace_s=1e9 outlived its timeout, a cancel, its controller, the
revocation of its key and the agent's own drain."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents import executor, running_agent
from tests.test_node_agent import wait_gone
from zcl import keys
from zcl.errors import CommandTimeoutError, TransportError
from zcl.ssh_context import NodeExecutorSSH
from zcl_lab.openssh_server import OpenSshServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]
IGNORES_TERM = "trap '' TERM; echo $$; sleep 300 & echo $!; wait"
FOREVER = 1e9  # the grace a careless (or hostile) controller asks for
BOUND = ("--max-kill-grace", "1")


async def started(run: asyncio.Task[object], pids: list[int], ready: asyncio.Event) -> None:
    await asyncio.wait_for(ready.wait(), 20)
    assert not run.done() and len(pids) == 2


def noting(pids: list[int], ready: asyncio.Event) -> Callable[[str, bytes], None]:
    def note(_: str, data: bytes) -> None:
        pids.extend(int(word) for word in data.split())
        if len(pids) >= 2:
            ready.set()

    return note


async def all_gone(pids: list[int], within_s: float) -> bool:
    gone = [await asyncio.to_thread(wait_gone, pid, within_s) for pid in pids]
    return all(gone)


async def test_a_timeout_kills_within_the_agent_s_bound_whatever_grace_was_asked(
    keydir: Path,
) -> None:
    pids: list[int] = []
    ready = asyncio.Event()
    with running_agent(keydir, *BOUND) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            run = asyncio.create_task(
                runner.run(
                    IGNORES_TERM, timeout_s=1, kill_grace_s=FOREVER, on_output=noting(pids, ready)
                )
            )
            await started(run, pids, ready)
            with pytest.raises(CommandTimeoutError):
                await asyncio.wait_for(run, 20)  # timeout 1 s, then at most the bound
            assert await all_gone(pids, 5), "the command outlived its timeout and the bound"


async def test_a_cancel_kills_within_the_bound(keydir: Path) -> None:
    pids: list[int] = []
    ready = asyncio.Event()
    with running_agent(keydir, *BOUND) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            run = asyncio.create_task(
                runner.run(IGNORES_TERM, kill_grace_s=FOREVER, on_output=noting(pids, ready))
            )
            await started(run, pids, ready)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            assert await all_gone(pids, 10), "the cancelled command still runs"


async def test_a_revoked_key_s_commands_are_killed_at_once_whatever_their_grace(
    keydir: Path,
) -> None:
    """SECURITY.md: a revoked key's commands are killed within a quarter second of the agent
    taking the change in; a grace is the controller's wish, and this controller lost its say."""
    keys.add_controller(keydir, "leaving")
    pids: list[int] = []
    ready = asyncio.Event()
    with running_agent(keydir, "--max-kill-grace", "60") as agent:
        async with executor(agent.endpoint, keydir, controller="leaving") as leaving:
            run = asyncio.create_task(
                leaving.run(IGNORES_TERM, kill_grace_s=FOREVER, on_output=noting(pids, ready))
            )
            await started(run, pids, ready)
            keys.revoke_controller(keydir, "leaving")
            with pytest.raises(TransportError, match="refused our key"):
                await asyncio.wait_for(run, 20)
            assert await all_gone(pids, 10), "a revoked key's command survived in its grace"


async def test_the_drain_ends_within_its_timeout_and_the_bound(keydir: Path) -> None:
    """An agent told to stop with --drain-timeout 2 still ran 22 s later."""
    pids: list[int] = []
    ready = asyncio.Event()
    with running_agent(keydir, "--drain-timeout", "1", *BOUND) as agent:
        async with executor(agent.endpoint, keydir, agent_silence_s=30) as runner:
            run = asyncio.create_task(
                runner.run(IGNORES_TERM, kill_grace_s=FOREVER, on_output=noting(pids, ready))
            )
            await started(run, pids, ready)
            agent.signal(signal.SIGTERM)
            assert await asyncio.to_thread(wait_gone, agent.process.pid, 15), "still draining"
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        assert await all_gone(pids, 5)


async def test_over_ssh_a_timeout_kills_within_the_executor_s_bound_too(
    sshd: OpenSshServer,
) -> None:
    """The same on both transports: over SSH the grace asked was the loop's length before its
    SIGKILL, so a grace of 1e9 never killed and the run never returned."""
    pids: list[int] = []
    ready = asyncio.Event()
    node = sshd.node("node1")
    async with NodeExecutorSSH.for_node(node) as over_ssh:
        over_ssh.max_kill_grace_s = 1
        run = asyncio.create_task(
            over_ssh.run(
                IGNORES_TERM, timeout_s=1, kill_grace_s=FOREVER, on_output=noting(pids, ready)
            )
        )
        await started(run, pids, ready)
        with pytest.raises(CommandTimeoutError):
            await asyncio.wait_for(run, 20)
        assert await all_gone(pids, 5), "the command outlived its timeout and the bound"
