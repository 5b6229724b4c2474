"""The ZeroMQ executor against real agent processes: results, streams, files, and every way a
command can fail without hanging."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.agents import executor, free_port, running_agent
from tests.test_node_agent import wait_gone
from zcl.circuit_breaker import CircuitBreaker
from zcl.errors import CircuitOpenError, CommandTimeoutError, RemoteError, TransportError
from zcl.system_probe import PROBE_SCRIPT, parse_probe


@pytest.mark.asyncio
async def test_results_carry_exit_status_and_both_streams_as_bytes(keydir: Path) -> None:
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            failed = await runner.run("echo out; echo err >&2; exit 7")
            binary = await runner.run(r"printf '\377\000\376'")
            silent = await runner.run(":")
            killed = await runner.run("kill -9 $$")
            placed = await runner.run(
                'pwd; echo "$GREETING"', cwd="/tmp", env={"GREETING": "a 'b' $c"}
            )
    assert (failed.exit_status, failed.stdout, failed.stderr) == (7, b"out\n", b"err\n")
    assert binary.stdout == b"\xff\x00\xfe"
    assert (silent.exit_status, silent.stdout, silent.stderr) == (0, b"", b"")
    assert killed.exit_status == -9
    assert placed.stdout == b"/tmp\na 'b' $c\n"


@pytest.mark.asyncio
async def test_commands_see_stdin_at_end_of_file_and_long_scripts_work(keydir: Path) -> None:
    long_script = "; ".join(f"x{n}={n}" for n in range(2000)) + "; echo $x1999"
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            reading = await runner.run("cat; read line; echo read=$?", timeout_s=10)
            long_one = await runner.run(long_script)
            counters = (await runner.ping())["counters"]
    assert reading.stdout == b"read=1\n"  # like /dev/null: nothing to read, at once
    assert long_one.stdout == b"1999\n"
    assert counters["warm.taken"] >= 1  # short scripts ran in warm shells
    assert counters["warm.too-long"] == 1  # the long one was started cold


@pytest.mark.asyncio
async def test_many_commands_in_flight_on_one_connection(keydir: Path) -> None:
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            results = await asyncio.gather(*(runner.run(f"echo {n}") for n in range(200)))
    assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(200)]


@pytest.mark.asyncio
async def test_output_streams_as_it_is_produced(keydir: Path) -> None:
    chunks: list[tuple[str, bytes]] = []
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            both_seen = asyncio.get_running_loop().create_future()

            def seen(stream: str, data: bytes) -> None:
                chunks.append((stream, data))
                if len(chunks) == 2:
                    both_seen.set_result(None)

            running = asyncio.create_task(
                runner.run("echo one; echo two >&2; sleep 30", on_output=seen)
            )
            await asyncio.wait_for(both_seen, 10)
            assert not running.done()  # output arrived while the command was still running
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
    assert sorted(chunks) == [("stderr", b"two\n"), ("stdout", b"one\n")]


@pytest.mark.asyncio
async def test_a_timeout_kills_the_command_and_everything_it_started(keydir: Path) -> None:
    pids: list[int] = []
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            with pytest.raises(CommandTimeoutError):
                await runner.run(
                    "sleep 300 & echo $!; wait",
                    timeout_s=1,
                    on_output=lambda _, data: pids.append(int(data)),
                )
        assert pids and wait_gone(pids[0], timeout_s=10)


@pytest.mark.asyncio
async def test_cancelling_the_awaiting_task_kills_the_remote_command(keydir: Path) -> None:
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            started = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(
                runner.run(
                    "sleep 300 & echo $!; wait",
                    on_output=lambda _, data: started.set_result(int(data)),
                )
            )
            pid = await asyncio.wait_for(started, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert wait_gone(pid, timeout_s=10)
            assert (await runner.ping())["counters"]["cancelled"] == 1


@pytest.mark.asyncio
async def test_files_go_both_ways_and_bad_paths_are_refused(keydir: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    with running_agent(keydir, "--max-file-bytes", "300000", "--file-root", str(tmp_path)) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            await runner.put_file(source, str(tmp_path / "remote.bin"))
            await runner.get_file(str(tmp_path / "remote.bin"), tmp_path / "back.bin")
            with pytest.raises(RemoteError, match="bad-path"):
                await runner.get_file("relative.bin", tmp_path / "x")
            with pytest.raises(RemoteError, match="file-error"):
                await runner.get_file(str(tmp_path / "missing"), tmp_path / "x")
            (tmp_path / "large").write_bytes(b"x" * 300_001)
            with pytest.raises(RemoteError, match="file-error"):
                await runner.get_file(str(tmp_path / "large"), tmp_path / "x")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert not (tmp_path / "x").exists()


@pytest.mark.asyncio
async def test_system_config_is_what_the_probe_reads_here(keydir: Path) -> None:
    local = await asyncio.create_subprocess_shell(PROBE_SCRIPT, stdout=asyncio.subprocess.PIPE)
    expected = parse_probe((await local.communicate())[0].decode())
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            assert await runner.system_config() == expected


@pytest.mark.asyncio
async def test_an_agent_killed_mid_command_fails_it_clearly_and_a_restart_is_reconnected(
    keydir: Path,
) -> None:
    bind = f"tcp://127.0.0.1:{free_port()}"
    async with executor(bind, keydir, agent_silence_s=1.0) as runner:
        with running_agent(keydir, bind=bind) as agent:
            cut_off = asyncio.create_task(runner.run("sleep 30"))
            while (await runner.ping())["running"] < 1:
                pass
            agent.kill(signal.SIGKILL)
            # The closed connection says so at once; a silent agent (frozen, cut off) would
            # be given up after its silence ("no answer").
            with pytest.raises(TransportError, match=r"closed the connection|no answer"):
                await asyncio.wait_for(cut_off, 15)
        with running_agent(keydir, bind=bind):
            assert (await runner.run("echo back")).stdout == b"back\n"


@pytest.mark.asyncio
async def test_a_restart_between_beats_is_noticed_by_incarnation(keydir: Path) -> None:
    """Noticed whichever comes first: the closed connection, the new incarnation, or the
    new agent not knowing the request; never by waiting out the silence."""
    bind = f"tcp://127.0.0.1:{free_port()}"
    async with executor(bind, keydir, agent_silence_s=30.0) as runner:  # silence: too slow here
        with running_agent(keydir, bind=bind) as agent:
            cut_off = asyncio.create_task(runner.run("sleep 30"))
            while (await runner.ping())["running"] < 1:
                pass
            agent.kill(signal.SIGKILL)
        with (
            running_agent(keydir, bind=bind),
            pytest.raises(TransportError, match=r"closed the connection|restarted|does not know"),
        ):
            await asyncio.wait_for(cut_off, 20)


@pytest.mark.asyncio
async def test_the_circuit_opens_after_repeated_transport_failures(keydir: Path) -> None:
    nowhere = f"tcp://127.0.0.1:{free_port()}"  # nothing listens here
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60)
    async with executor(nowhere, keydir, agent_silence_s=0.3, breaker=breaker) as runner:
        for _ in range(2):
            with pytest.raises(TransportError, match="cannot connect"):
                await runner.run("true")
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError, match="circuit open"):
            await asyncio.wait_for(runner.run("true"), 0.1)  # fails fast, without waiting
