"""spawn.RunningCommand and WarmShells in this process: results, kills, limits, warm starts."""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

import pytest

from tests.test_node_agent import wait_gone
from zcl.agent import posix_spawn, spawn
from zcl.agent.spawn import RunningCommand, SpawnError, WarmShells
from zcl.run_options import RunOptions

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

    command = RunningCommand("sleep 300 & echo $!; wait", ENV, RunOptions(timeout_s=0.5), sink=keep)
    done = await asyncio.wait_for(command.finished, 10)
    assert done.timed_out and done.exit_status == -9
    assert wait_gone(int(pids[0]), timeout_s=10)


@pytest.mark.asyncio
async def test_output_beyond_the_cap_is_dropped_and_flagged() -> None:
    done = await RunningCommand(
        "head -c 5000000 /dev/zero; echo tail >&2", ENV, RunOptions(max_output_bytes=1000)
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
    monkeypatch.setattr(spawn, "SHELL", "/nonexistent/sh")

    async def start() -> None:
        RunningCommand("true", ENV)

    with pytest.raises(spawn.SpawnError, match="cannot start /nonexistent/sh"):
        asyncio.run(start())


# -- faults on the way in (issue 14: spawn.py's leaks and spins) --------------------------------


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_running_out_of_descriptors_midway_leaks_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second pipe failing (EMFILE) used to leak the first pair and escape as OSError."""
    real_pipe2, calls = os.pipe2, []

    def second_fails(flags: int) -> tuple[int, int]:
        calls.append(flags)
        if len(calls) == 2:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_pipe2(flags)

    monkeypatch.setattr(os, "pipe2", second_fails)
    before = open_fds()
    with pytest.raises(SpawnError, match="Too many open files"):
        spawn._spawn("true", ENV)
    assert open_fds() <= before  # nothing new left open (the GC may close others meanwhile)


@pytest.mark.asyncio
async def test_a_step_failing_after_the_start_leaves_no_child_and_no_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pidfd_open failing after posix_spawn used to leave the shell running, unreaped."""
    started: list[int] = []
    real_spawn = posix_spawn.spawn_in_new_session

    def noting(*args: Any, **kwargs: Any) -> int:
        started.append(real_spawn(*args, **kwargs))
        return started[-1]

    def no_pidfd(pid: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(spawn, "spawn_in_new_session", noting)
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    spawn.FdWatcher.of(asyncio.get_running_loop())  # the loop's epoll set is made once, first
    before = open_fds()
    with pytest.raises(SpawnError, match="Too many open files"):
        RunningCommand("sleep 300", ENV)
    monkeypatch.undo()
    assert open_fds() <= before  # nothing new left open (the GC may close others meanwhile)
    assert started and wait_gone(started[0], timeout_s=10)
    with pytest.raises(ChildProcessError):  # reaped too: no zombie left
        os.waitpid(started[0], os.WNOHANG)


def test_the_warm_shell_filler_backs_off_when_spawning_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the process limit (EAGAIN) it used to retry at once, for ever, a core at 100%."""
    waits: list[float] = []

    def cannot_spawn(script: str | None, env: Any) -> Any:
        raise SpawnError(errno.EAGAIN, "cannot start /bin/sh: Resource temporarily unavailable")

    monkeypatch.setattr(spawn, "_spawn", cannot_spawn)
    shells = WarmShells(ENV, size=2, fillers=0)

    def pause(seconds: float) -> bool:  # the filler's wait, recorded instead of waited
        waits.append(seconds)
        if len(waits) >= 8:
            shells.stopping = True
        return shells.stopping

    shells.pause = pause
    shells.wanted.set()
    shells._keep_filled()  # on this thread: it returns once stopping is set
    assert len(waits) == 8
    assert waits == sorted(waits) and waits[0] > 0 and waits[-1] > waits[0]
    assert waits[-1] <= spawn.MAX_FILL_BACKOFF_S


# -- a command that leaves its session (issue 14, finding 6) ------------------------------------

ESCAPES = "setsid sh -c 'echo $$; exec sleep 300' & wait"  # a new session, holding stdout


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_a_child_in_a_session_of_its_own_is_killed_and_frees_the_slot(how: str) -> None:
    """setsid escaped the process-group kill, and its copy of stdout kept the command (and
    its --max-concurrent slot) open for ever."""
    pids: list[int] = []
    started = asyncio.Event()

    def keep(_: int, data: bytes) -> bool:
        pids.extend(int(word) for word in data.split())
        started.set()
        return True

    command = RunningCommand(
        ESCAPES, ENV, RunOptions(timeout_s=0.5 if how == "timeout" else None), sink=keep
    )
    await asyncio.wait_for(started.wait(), 10)
    if how == "cancel":
        command.cancel()
    done = await asyncio.wait_for(command.finished, 15)
    assert done.timed_out if how == "timeout" else done.cancelled
    assert wait_gone(pids[0], timeout_s=10), "the escaped child still runs"
