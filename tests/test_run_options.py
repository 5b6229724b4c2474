"""What a real runner passes besides the command (issue 15, part 5), the same on both
transports: stdin, a kill that gives the command a grace, another user, a retry policy, and
the output as an async iterator with backpressure."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import pwd
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.agents import RawController, both_transports, executor, free_port, running_agent
from tests.helpers import eventually, skip_here_fail_on_ci
from tests.test_node_agent import wait_gone
from zcl.errors import CommandTimeoutError, InvalidRequestError, RemoteError, TransportError
from zcl.retry import RetryPolicy
from zcl.ssh_context import NodeExecutorSSH
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl_lab.openssh_server import FAST_SHELL_USER, OpenSshServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
Executor = NodeExecutorSSH | ZmqNodeExecutor


async def within(run: Awaitable[Any], seconds: float = 30) -> Any:
    return await asyncio.wait_for(run, seconds)


# -- stdin -------------------------------------------------------------------------------------


async def test_input_reaches_the_command_s_stdin_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    """More than a pipe holds, so the agent must feed it as the command reads; a command that
    never reads its input still ends; no input is end of file, as before."""
    data = os.urandom(3 * 1024 * 1024)
    expected = hashlib.sha256(data).hexdigest().encode()
    async with both_transports(sshd, keydir) as executors:
        for name, ex in executors.items():
            kept = await within(ex.run("sha256sum", input=data))
            assert kept.stdout.split()[0] == expected, name
            streamed = await within(ex.run("sha256sum", input=data, on_output=lambda *_: None))
            assert streamed.stdout.split()[0] == expected, name
            unread = await within(ex.run("echo ignored", input=data))
            assert (unread.exit_status, unread.stdout) == (0, b"ignored\n"), name
            empty = await within(ex.run("wc -c", input=b""))
            assert empty.stdout.strip() == b"0", name
            nothing = await within(ex.run("cat"))  # no input: end of file, not a hang
            assert nothing.stdout == b"", name
            with pytest.raises(InvalidRequestError, match="input must be bytes"):
                await ex.run("cat", input="text")  # type: ignore[arg-type]


# -- a kill with a grace -----------------------------------------------------------------------

TRAPS_TERM = "trap 'touch {marker}; exit 0' TERM; echo $$; sleep 300 & wait; echo never"
IGNORES_TERM = "trap '' TERM; echo $$; sleep 300 & wait"


@pytest.mark.parametrize("grace", [None, 10.0], ids=["no-grace", "grace"])
async def test_a_timed_out_command_gets_sigterm_and_its_grace_only_when_asked(
    sshd: OpenSshServer, keydir: Path, shared_dir: Path, grace: float | None
) -> None:
    """Without a grace a timeout is SIGKILL, so the command's TERM trap never runs; with one
    it runs (the command cleans up) and ends the command early."""
    async with both_transports(sshd, keydir) as executors:
        for name, ex in executors.items():
            marker = shared_dir / f"{name}-cleaned"
            command = TRAPS_TERM.format(marker=marker)
            with pytest.raises(CommandTimeoutError, match="ran over 1 s"):
                await within(ex.run(command, timeout_s=1, kill_grace_s=grace))
            assert marker.exists() == (grace is not None), name


async def test_what_ignores_sigterm_is_killed_when_the_grace_is_over(
    sshd: OpenSshServer, keydir: Path
) -> None:
    async with both_transports(sshd, keydir) as executors:
        for name, ex in executors.items():
            pids: list[int] = []

            def note(_: str, data: bytes, pids: list[int] = pids) -> None:
                pids.extend(int(word) for word in data.split())

            run = ex.run(IGNORES_TERM, timeout_s=1, kill_grace_s=1, on_output=note)
            with pytest.raises(CommandTimeoutError):
                await within(run)
            assert pids, name
            assert await asyncio.to_thread(wait_gone, pids[0], 10), f"{name}: still runs"


# -- another user ------------------------------------------------------------------------------


def other_user() -> pwd.struct_passwd:
    """The user commands are asked to run as: the SSH tests' login user, made by `make test`."""
    reason = None
    if os.geteuid() != 0:
        reason = "running as another user needs root (the agent changes user per command)"
    else:
        try:
            return pwd.getpwnam(FAST_SHELL_USER)
        except KeyError:
            reason = f"no user {FAST_SHELL_USER} (make test creates it)"
    skip_here_fail_on_ci(reason, "the run-as tests")
    raise AssertionError("unreachable")


async def test_a_command_runs_as_a_listed_user_and_never_as_another(
    sshd: OpenSshServer, keydir: Path
) -> None:
    user = other_user()
    async with both_transports(sshd, keydir, "--run-as", user.pw_name) as executors:
        seen = {}
        for name, ex in executors.items():
            result = await within(ex.run('id -un; echo "$HOME"; pwd', user=user.pw_name))
            seen[name] = result.stdout
        expected = f"{user.pw_name}\n{user.pw_dir}\n{user.pw_dir}\n".encode()
        assert seen["zmq"] == seen["ssh"] == expected
        with pytest.raises(InvalidRequestError, match="not a valid user name"):
            await executors["zmq"].run("true", user="-o ProxyCommand=x")


async def test_the_agent_refuses_a_user_its_list_does_not_name(keydir: Path) -> None:
    user = other_user()
    with running_agent(keydir, "--run-as", user.pw_name) as agent:
        async with executor(agent.endpoint, keydir) as over_zmq:
            with pytest.raises(RemoteError, match="not-allowed: may not run as 'root'"):
                await within(over_zmq.run("id -un", user="root"))
            assert (await within(over_zmq.run("id -un"))).stdout.strip() == b"root"
    with running_agent(keydir) as agent:  # no --run-as: nobody else
        async with executor(agent.endpoint, keydir) as over_zmq:
            with pytest.raises(RemoteError, match=r"not-allowed: .*--run-as: none"):
                await within(over_zmq.run("id -un", user=user.pw_name))


# -- retry -------------------------------------------------------------------------------------


async def test_a_retry_policy_retries_what_never_reached_the_node_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    """Nothing listens: every attempt fails before the command could start, so the policy
    tries again, and the last error says how many times it failed."""
    closed = free_port()
    policy = RetryPolicy(attempts=3, backoff_s=0)
    over_ssh = NodeExecutorSSH.for_node(dataclasses.replace(sshd.node("node1"), ssh_port=closed))
    async with over_ssh, executor(f"tcp://127.0.0.1:{closed}", keydir) as over_zmq:
        executors: dict[str, Executor] = {"ssh": over_ssh, "zmq": over_zmq}
        for name, ex in executors.items():
            with pytest.raises(TransportError) as failed:
                await within(ex.run("true", retry=policy))
            assert f"failed 3 times under {policy}" in (failed.value.__notes__ or []), name


async def test_a_retry_policy_never_runs_a_command_again_after_it_may_have_started(
    keydir: Path,
) -> None:
    """The agent dies while the command runs: the TransportError may hide a running command,
    so the default policy does not start a second copy."""
    policy = RetryPolicy(attempts=5, backoff_s=0)
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir, agent_silence_s=0.5) as over_zmq:
            pids: list[int] = []
            started = asyncio.Event()

            def note(_: str, data: bytes) -> None:
                pids.extend(int(word) for word in data.split())
                started.set()

            run = asyncio.create_task(
                over_zmq.run("echo $$; sleep 300", on_output=note, retry=policy)
            )
            await within(started.wait())
            agent.kill(9)
            with pytest.raises(TransportError) as failed:
                await within(run)
            assert failed.value.may_have_run
            assert not getattr(failed.value, "__notes__", None)  # one attempt, no retry


# -- the output as an async iterator -----------------------------------------------------------


async def test_the_output_iterator_gives_every_chunk_then_the_result_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    async with both_transports(sshd, keydir) as executors:
        for name, ex in executors.items():
            taken: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
            async with ex.stream("seq 1 200000; echo oops >&2; exit 3") as output:
                async for stream, chunk in output:
                    taken[stream].append(chunk)
            assert b"".join(taken["stdout"]) == b"".join(b"%d\n" % n for n in range(1, 200001))
            assert b"".join(taken["stderr"]) == b"oops\n", name
            assert output.result.exit_status == 3, name
            assert output.result.stdout == b"".join(taken["stdout"]), name
            with pytest.raises(CommandTimeoutError):
                async with ex.stream("echo first; sleep 300", timeout_s=1) as output:
                    async for _ in output:
                        pass


async def test_leaving_the_output_loop_early_kills_the_command_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    async with both_transports(sshd, keydir) as executors:
        for name, ex in executors.items():
            async with ex.stream("echo $$; exec sleep 300") as output:
                async for _, chunk in output:
                    pid = int(chunk)
                    break
            assert await asyncio.to_thread(wait_gone, pid, 15), f"{name}: still runs"


async def test_a_slow_output_loop_slows_the_command_instead_of_queueing(keydir: Path) -> None:
    """Over ZeroMQ the agent stops reading the command's pipes once a window is unread: the
    loop holds one chunk of a 64 MiB stream and the agent reports the stream paused."""
    with running_agent(keydir, "--max-output-bytes", str(128 * 1024 * 1024)) as agent:
        async with executor(agent.endpoint, keydir) as over_zmq:
            with zmq.Context() as ctx:
                raw = RawController(ctx, agent.endpoint, keydir)
                async with over_zmq.stream("head -c 67108864 /dev/zero") as output:
                    total = len((await anext(output))[1])
                    paused = lambda: raw.counters().get("stream.paused", 0) > 0  # noqa: E731
                    await asyncio.to_thread(eventually, paused, 20, "the stream paused")
                    async for _, chunk in output:
                        total += len(chunk)
                raw.sock.close(linger=0)
    assert total == 64 * 1024 * 1024
    assert output.result.stdout == b"\0" * total


async def test_over_ssh_a_slow_output_loop_holds_at_most_its_pending_limit(
    sshd: OpenSshServer,
) -> None:
    """Over SSH the executor stops reading the channel while the loop is behind."""
    async with NodeExecutorSSH.for_node(sshd.node("node1")) as over_ssh:
        most = 0
        async with over_ssh.stream("head -c 16777216 /dev/zero") as output:
            async for _, _chunk in output:
                most = max(most, output._pending)
                await asyncio.sleep(0)  # let the producer run between chunks
        assert len(output.result.stdout) == 16 * 1024 * 1024
        assert most <= output.max_pending_bytes + 65536


# -- an SSH connection that drops --------------------------------------------------------------


async def test_over_ssh_a_command_whose_connection_drops_is_killed(sshd: OpenSshServer) -> None:
    """sshd kills nothing when a connection without a terminal ends: the command ran on."""
    async with NodeExecutorSSH.for_node(sshd.node("node1")) as over_ssh:
        pids: list[int] = []
        started = asyncio.Event()

        def note(_: str, data: bytes) -> None:
            pids.extend(int(word) for word in data.split())
            started.set()

        run = asyncio.create_task(over_ssh.run("sleep 300 & echo $!; wait", on_output=note))
        await within(started.wait())
        over_ssh.connections[None].abort()  # the connection is gone, as when a link fails
        with pytest.raises(TransportError):
            await within(run)
    assert await asyncio.to_thread(wait_gone, pids[0], 15), "the command still runs"


# -- one execution environment (issue 22, finding 3) ------------------------------------------

ENVIRONMENT_PROBE = "id; pwd; env | sort; ulimit -a; umask; locale 2>/dev/null | head -1"


def _normalised(output: bytes) -> str:
    """The probe's output with the one value that differs by design: each command's marker."""
    lines = output.decode().splitlines()
    return "\n".join(
        "ZCL_COMMAND_ID=..." if line.startswith("ZCL_COMMAND_ID=") else line for line in lines
    )


async def test_a_command_meets_the_same_environment_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    """User, groups, HOME, working folder, the whole environment, PATH, locale, umask and
    resource limits: what a perf test sees must not change with the transport. (Over ZeroMQ a
    command met the agent's environment, its raised open-files limit and its working folder;
    over SSH, sshd's.)"""
    user = other_user()
    async with both_transports(sshd, keydir, "--run-as", user.pw_name) as executors:
        seen = {
            name: _normalised((await within(ex.run(ENVIRONMENT_PROBE, user=user.pw_name))).stdout)
            for name, ex in executors.items()
        }
    assert seen["zmq"] == seen["ssh"]
    assert f"HOME={user.pw_dir}" in seen["zmq"].splitlines()
    assert user.pw_dir in seen["zmq"].splitlines()  # pwd: the home folder, as an SSH login


async def test_the_agent_s_own_user_meets_the_documented_environment(keydir: Path) -> None:
    """No user asked: the agent's own user, with the same variables and nothing of the
    agent's own environment (its keys folder, its virtualenv, systemd's variables)."""
    me = pwd.getpwuid(os.geteuid())
    os.environ["ZCL_TEST_LEAK"] = "agent-only"
    try:
        with running_agent(keydir) as agent:
            async with executor(agent.endpoint, keydir) as over_zmq:
                result = await within(over_zmq.run("env; pwd; umask"))
    finally:
        del os.environ["ZCL_TEST_LEAK"]
    lines = result.stdout.decode().splitlines()
    names = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert names <= {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "PWD", "ZCL_COMMAND_ID"}
    assert f"HOME={me.pw_dir}" in lines and lines[-2:] == [me.pw_dir, "0022"]
