"""spawn.RunningCommand and WarmShells in this process: results, kills, limits, warm starts."""

from __future__ import annotations

import asyncio
import os

import pytest

from cluster_sim.agent.spawn import RunningCommand, WarmShells
from tests.test_node_agent import wait_gone

ENV = dict(os.environ)


@pytest.mark.asyncio
async def test_exit_status_and_output_of_a_plain_command() -> None:
    done = await RunningCommand("echo out; echo err >&2; exit 4", ENV).finished
    assert (done.exit_status, done.stdout, done.stderr) == (4, b"out\n", b"err\n")
    assert not (done.truncated or done.timed_out or done.cancelled)


@pytest.mark.asyncio
async def test_a_timeout_kills_the_whole_process_group() -> None:
    pids: list[bytes] = []

    def keep(_: int, data: bytes) -> bool:
        pids.append(data)
        return True

    command = RunningCommand("sleep 300 & echo $!; wait", ENV, timeout_s=0.5, sink=keep)
    done = await asyncio.wait_for(command.finished, 10)
    assert done.timed_out and done.exit_status == -9
    assert wait_gone(int(pids[0]), timeout_s=10)


@pytest.mark.asyncio
async def test_output_beyond_the_cap_is_dropped_and_flagged() -> None:
    done = await RunningCommand(
        "head -c 5000000 /dev/zero; echo tail >&2", ENV, max_output_bytes=1000
    ).finished
    assert done.truncated
    assert len(done.stdout) + len(done.stderr) == 1000
    assert done.exit_status == 0  # the command ran to the end: its output was read, not blocked


@pytest.mark.asyncio
async def test_a_sink_that_refuses_output_marks_the_result_truncated() -> None:
    done = await RunningCommand("echo hello", ENV, sink=lambda _, __: False).finished
    assert done.truncated and done.stdout == b""


@pytest.mark.asyncio
async def test_warm_shells_run_commands_like_cold_ones_and_are_cleaned_up() -> None:
    warm = WarmShells(ENV, size=2, fillers=1)
    try:
        warm.wanted.set()
        cold = await RunningCommand("echo $0; cd /nope", ENV).finished
        results = [
            await RunningCommand("echo $0; cd /nope", ENV, warm=warm).finished for _ in range(5)
        ]
        pids = [shell.pid for shell in warm.ready]
    finally:
        warm.close()
    assert warm.taken >= 1, "no command ran in a warm shell"
    for result in results:
        assert (result.exit_status, result.stdout, result.stderr) == (
            cold.exit_status,
            cold.stdout,
            cold.stderr,
        )
    assert all(wait_gone(pid, timeout_s=5) for pid in pids)


def test_a_missing_shell_is_a_clear_spawn_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster_sim.agent import spawn  # noqa: PLC0415

    monkeypatch.setattr(spawn, "SHELL", "/nonexistent/sh")

    async def start() -> None:
        RunningCommand("true", ENV)

    with pytest.raises(spawn.SpawnError, match="cannot start /nonexistent/sh"):
        asyncio.run(start())
