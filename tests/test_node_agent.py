"""The node agent as a real process: who gets in, what it refuses, and the limits it keeps."""

from __future__ import annotations

import asyncio
import os
import select
import signal
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agents import RawController, executor, free_port, running_agent
from zcl import agent_wire as wire
from zcl import keys
from zcl.errors import AgentDrainingError, CommandTimeoutError, RemoteError, TransportError
from zcl.executor_options import ZmqExecutorOptions
from zcl.keys import ControllerKeys
from zcl.zmq_node_executor import ZmqNodeExecutor


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Has process `pid` ended within the timeout? Waits on a pidfd, not by sleeping."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(pidfd)


# -- who gets in ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_controller_key_not_in_authorized_keys_is_refused(
    keydir: Path, tmp_path: Path
) -> None:
    keys.add_controller(keydir, "intruder")
    keys.revoke_controller(keydir, "intruder")  # it pins the right host key but is not trusted
    marker = tmp_path / "ran"
    with running_agent(keydir) as agent:
        async with executor(
            agent.endpoint, keydir, controller="intruder", agent_silence_s=3
        ) as intruder:
            with pytest.raises(TransportError, match="refused our key"):
                await intruder.run(f"touch {marker}")
        with zmq.Context() as ctx:
            counters = RawController(ctx, agent.endpoint, keydir).counters()
    assert not marker.exists()
    assert counters["refused.unknown-key"] >= 1


@pytest.mark.asyncio
async def test_a_revoked_key_loses_its_open_session_at_once(keydir: Path, tmp_path: Path) -> None:
    """The handshake is not the only check: a controller connected before its key was revoked
    has its running command killed and its next request refused, while other keys' sessions go
    on. (It used to keep running commands on the connection it already had.)"""
    keys.add_controller(keydir, "leaving")
    marker = tmp_path / "ran"
    pids: list[int] = []
    started = asyncio.Event()

    def note_pid(stream: str, data: bytes) -> None:
        pids.extend(int(word) for word in data.split())
        started.set()

    with running_agent(keydir) as agent:
        async with (
            executor(agent.endpoint, keydir, controller="leaving", agent_silence_s=3) as leaving,
            executor(agent.endpoint, keydir) as staying,
        ):
            assert (await leaving.run("echo in")).stdout == b"in\n"
            assert (await staying.run("echo in")).stdout == b"in\n"
            running = asyncio.create_task(
                leaving.run("sleep 300 & echo $!; wait", on_output=note_pid)
            )
            await asyncio.wait_for(started.wait(), 15)  # its first output: it runs
            assert keys.revoke_controller(keydir, "leaving") == 1
            with pytest.raises(TransportError, match="refused our key"):
                await asyncio.wait_for(running, 20)
            assert await asyncio.to_thread(wait_gone, pids[0], 15), "its command still runs"
            with pytest.raises(TransportError, match="refused our key"):
                await asyncio.wait_for(leaving.run(f"touch {marker}"), 20)
            assert (await staying.run("echo still")).stdout == b"still\n"
    assert not marker.exists()


@pytest.mark.asyncio
async def test_a_controller_without_curvezmq_is_refused(keydir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with running_agent(keydir) as agent:
        async with ZmqNodeExecutor(
            "node1", agent.endpoint, None, options=ZmqExecutorOptions(agent_silence_s=0.5)
        ) as plain:
            with pytest.raises(TransportError):
                await plain.run(f"touch {marker}")
    assert not marker.exists()


@pytest.mark.asyncio
async def test_a_controller_pinning_the_wrong_agent_key_is_refused(
    keydir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    real = keys.load_controller_keys(keys.controller_dir(keydir, "runner"))
    impostor_key, _ = zmq.curve_keypair()
    wrong = ControllerKeys(real.public, real.secret, {"node1": impostor_key})
    with running_agent(keydir) as agent:
        async with ZmqNodeExecutor(
            "node1", agent.endpoint, wrong, options=ZmqExecutorOptions(agent_silence_s=0.5)
        ) as pinned_wrong:
            with pytest.raises(TransportError):
                await pinned_wrong.run(f"touch {marker}")
    assert not marker.exists()


def test_the_agent_will_not_start_without_keys_unless_told_insecure() -> None:
    from zcl.agent import node_agent  # noqa: PLC0415

    with pytest.raises(SystemExit) as stopped:
        node_agent.main(["--bind", "tcp://127.0.0.1:*", "--operations", "launch"])
    assert stopped.value.code == 2
    assert node_agent.main(["--bind", "tcp://127.0.0.1:*", "--keys", "/nonexistent"]) == 1
    os.environ.pop("ZCL_AGENT_KEYS", None)
    assert node_agent.main(["--bind", "tcp://127.0.0.1:*"]) == 1


# -- what it refuses --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_operations_off_the_allow_list_are_refused(keydir: Path, tmp_path: Path) -> None:
    with running_agent(keydir, "--operations", "run,ping") as agent:
        with zmq.Context() as ctx:
            raw = RawController(ctx, agent.endpoint, keydir)
            for operation in (b"exec", b"__init__", b"op_run", wire.PUT):
                raw.request(b"r1", operation, {"path": "/tmp/x", "data": b""})
                answer = raw.reply()
                assert answer.kind == wire.ERROR
                assert answer.body()["code"] == "not-allowed"
        async with executor(agent.endpoint, keydir) as runner:
            with pytest.raises(RemoteError, match="not-allowed"):
                await runner.put_file(Path(__file__), str(tmp_path / "copy"))
            assert (await runner.run("echo still serving")).stdout == b"still serving\n"
    assert not (tmp_path / "copy").exists()


def test_malformed_requests_get_an_error_or_a_drop_and_are_counted(keydir: Path) -> None:
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        raw.send(b"ZCA9", b"r1", wire.RUN, wire.encode_body({"command": "true"}))  # version
        raw.send(wire.VERSION, b"r2", wire.RUN)  # truncated
        raw.send(wire.VERSION, b"", wire.RUN, wire.encode_body({}))  # no request id
        raw.send(wire.VERSION, b"r3", wire.RUN, b"\xc1 not msgpack")
        raw.send(wire.VERSION, b"r4", wire.RUN, wire.encode_body([1, 2]))  # type: ignore[arg-type]
        raw.request(b"r5", wire.RUN, {"command": 42})
        raw.request(b"r6", wire.RUN, {"command": "true", "env": {"A;rm -rf /": "x"}})
        raw.request(b"r7", wire.RUN, {"command": "true", "timeout_s": -1})
        raw.request(b"r8", wire.GET, {"path": "relative/path"})
        codes = {}
        for _ in range(4):
            answer = raw.reply()
            codes[answer.request_id] = answer.body()["code"]
        assert codes == {
            b"r5": "bad-field",
            b"r6": "bad-field",
            b"r7": "bad-field",
            b"r8": "bad-path",
        }
        counters = raw.counters()
    assert counters["dropped.bad-version"] == 1
    assert counters["dropped.bad-frames"] == 1
    assert counters["dropped.bad-request-id"] == 1
    assert counters["dropped.bad-body"] == 2
    assert counters["refused.bad-field"] == 3


def test_garbage_never_stops_the_agent(keydir: Path) -> None:
    frames = st.lists(st.binary(max_size=64), min_size=0, max_size=6)
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.one_of(frames, frames.map(lambda f: [wire.VERSION, b"g", *f])))
        def send_garbage(message: list[bytes]) -> None:
            if message:
                raw.send(*message)

        send_garbage()
        counters = raw.counters()  # it still answers, after everything above
        assert agent.process.poll() is None
    assert counters.get("dropped.internal-error", 0) == 0
    assert sum(v for k, v in counters.items() if k.startswith(("dropped.", "refused."))) > 0


@pytest.mark.asyncio
async def test_an_oversized_message_is_dropped_and_others_stay_served(keydir: Path) -> None:
    limit = wire.UNASKED_REQUEST_BYTES  # the least the agent may be given
    with running_agent(keydir, "--max-message-bytes", str(limit)) as agent:
        with zmq.Context() as ctx:
            raw = RawController(ctx, agent.endpoint, keydir)
            raw.request(b"big", wire.RUN, {"command": "echo " + "x" * (limit + 100_000)})
            with pytest.raises(TimeoutError):
                raw.reply(timeout_ms=1000)
        async with executor(agent.endpoint, keydir) as runner:
            assert (await runner.run("echo fine")).stdout == b"fine\n"


# -- the limits it keeps ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_command_that_floods_output_keeps_the_agents_memory_bounded(
    keydir: Path,
) -> None:
    with running_agent(keydir, "--max-output-bytes", "1000000") as agent:
        async with executor(agent.endpoint, keydir) as runner:
            result = await runner.run("head -c 300000000 /dev/zero", timeout_s=60, truncate=True)
        status = Path(f"/proc/{agent.process.pid}/status").read_text()
    peak_kb = int(status.split("VmHWM:")[1].split()[0])
    assert result.truncated
    assert len(result.stdout) == 1_000_000
    assert peak_kb < 150_000, f"agent peaked at {peak_kb} kB for 300 MB of output"


@pytest.mark.asyncio
async def test_streamed_output_keeps_to_the_same_cap_even_for_a_reader_that_stalls(
    keydir: Path,
) -> None:
    """Streaming used to bypass --max-output-bytes: 849 MB of agent memory with a 1 MiB cap
    while the controller did not read, and all 200 MB in the executor's result."""
    with running_agent(keydir, "--max-output-bytes", "1000000") as agent:
        with zmq.Context() as ctx:
            stalled = RawController(ctx, agent.endpoint, keydir)
            command = "head -c 200000000 /dev/zero"
            stalled.request(b"flood", wire.RUN, {"command": command, "stream": True})
            watcher = RawController(ctx, agent.endpoint, keydir)
            while not finished_one(watcher):
                pass  # each round is a ping's round trip, until the command has ended
            status = Path(f"/proc/{agent.process.pid}/status").read_text()
            streamed, done = 0, None
            while done is None:  # now read what the agent kept for us
                reply = stalled.reply(timeout_ms=10_000)
                if reply.kind == wire.OUT:
                    streamed += len(reply.frames[1])
                else:
                    done = reply
        async with executor(agent.endpoint, keydir) as runner:
            seen: list[bytes] = []
            result = await runner.run(
                command, timeout_s=60, on_output=lambda _, d: seen.append(d), truncate=True
            )
    peak_kb = int(status.split("VmHWM:")[1].split()[0])
    assert peak_kb < 150_000, f"agent peaked at {peak_kb} kB for 200 MB of streamed output"
    assert streamed <= 1_000_000 and done.kind == wire.DONE and done.body()["truncated"]
    assert result.truncated and len(result.stdout) == sum(map(len, seen)) <= 1_000_000


def agent_state(controller: RawController) -> dict[str, Any]:
    controller.request(b"state", wire.PING, {"ids": []})
    while (answer := controller.reply()).request_id != b"state":
        pass
    return answer.body()


def test_a_stream_with_a_window_pauses_for_a_reader_that_stalls_and_loses_nothing(
    keydir: Path,
) -> None:
    """Flow control: a controller that asks for a window gets at most that much unacknowledged
    output; the command then waits (its pipe fills), and goes on as credit comes back. Before,
    the agent read on regardless, so a stalled reader's output was queued or dropped."""
    total, window = 3_000_000, 256 * 1024
    command = f"head -c {total} /dev/zero"
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        reader = RawController(ctx, agent.endpoint, keydir)
        watcher = RawController(ctx, agent.endpoint, keydir)
        reader.request(b"slow", wire.RUN, {"command": command, "stream": True, "window": window})
        while not agent_state(watcher)["counters"].get("stream.paused"):
            pass  # each round is a ping's round trip, until the agent has paused the stream
        assert agent_state(watcher)["running"] == 1  # paused, not finished, not dropped
        received, done = 0, None
        while done is None:
            reply = reader.reply(timeout_ms=10_000)
            if reply.kind == wire.OUT:
                received += len(reply.frames[1])
                reader.request(
                    b"c", wire.CREDIT, {"target": b"slow", "bytes": len(reply.frames[1])}
                )
            else:
                done = reply
        reader.sock.close(linger=0)
        watcher.sock.close(linger=0)
    assert done.kind == wire.DONE and not done.body()["truncated"]
    assert received == total


def finished_one(controller: RawController) -> bool:
    """Has the agent started a command and has every command ended?"""
    controller.request(b"state", wire.PING, {"ids": []})
    while (answer := controller.reply()).request_id != b"state":
        pass
    state = answer.body()
    return bool(state["counters"].get("commands", 0) >= 1 and state["running"] == 0)


@pytest.mark.asyncio
async def test_a_timeout_frees_the_slot_of_a_command_whose_child_left_its_session(
    keydir: Path,
) -> None:
    """A setsid child escaped the kill and held stdout: its slot never freed, and with
    --max-concurrent 1 the agent answered busy to everyone after."""
    pids: list[int] = []
    escapes = "setsid sh -c 'echo $$; exec sleep 300' & wait"
    with running_agent(keydir, "--max-concurrent", "1") as agent:
        async with executor(agent.endpoint, keydir) as runner:
            with pytest.raises(CommandTimeoutError):
                await asyncio.wait_for(
                    runner.run(
                        escapes,
                        timeout_s=1,
                        on_output=lambda _, data: pids.extend(map(int, data.split())),
                    ),
                    30,
                )
            assert (await runner.run("echo next", timeout_s=10)).stdout == b"next\n"
    assert pids
    assert await asyncio.to_thread(wait_gone, pids[0], 10)


@pytest.mark.asyncio
async def test_commands_beyond_the_concurrency_cap_are_refused(keydir: Path) -> None:
    with running_agent(keydir, "--max-concurrent", "2") as agent:
        async with executor(agent.endpoint, keydir) as runner:
            sleepers = [asyncio.create_task(runner.run("sleep 30")) for _ in range(2)]
            while (await runner.ping())["running"] < 2:
                pass  # each ping is a round trip to the agent: this waits on its answers
            with pytest.raises(RemoteError, match="busy"):
                await runner.run("true")
            for task in sleepers:
                task.cancel()
            await asyncio.gather(*sleepers, return_exceptions=True)


@pytest.mark.asyncio
async def test_sigterm_lets_running_commands_finish_and_refuses_new_ones(keydir: Path) -> None:
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            finishing = asyncio.create_task(runner.run("sleep 1; echo finished"))
            while (await runner.ping())["running"] < 1:
                pass
            agent.signal(signal.SIGTERM)
            while not (await runner.ping())["draining"]:
                pass  # the signal reaches the agent's loop asynchronously
            with pytest.raises(AgentDrainingError, match="shutting down"):
                await runner.run("echo too late")  # a TransportError: the fallback takes it
            assert (await finishing).stdout == b"finished\n"
            assert await asyncio.to_thread(agent.process.wait, 10) == 0


@pytest.mark.asyncio
async def test_ping_answers_while_the_agent_drains(keydir: Path) -> None:
    """A ping starts nothing, so it still goes once this executor has learned of the drain: it
    is how a caller sees the drain. (It raised AgentDrainingError, so a loop waiting for
    ping()["draining"] failed whenever the drain notice came in first.)"""
    with running_agent(keydir) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            finishing = asyncio.create_task(runner.run("sleep 2; echo finished"))
            while (await runner.ping())["running"] < 1:
                pass
            agent.signal(signal.SIGTERM)
            with pytest.raises(AgentDrainingError):
                while True:  # until a refusal tells this executor of the drain
                    await runner.run("true")
            assert (await runner.ping())["draining"] is True
            assert (await finishing).stdout == b"finished\n"


@pytest.mark.asyncio
async def test_a_refused_handshake_found_at_send_is_reported_as_the_refusal(
    keydir: Path,
) -> None:
    """libzmq drops the pipe of a connection whose key the agent refused; a request sent
    before the monitor's event is read is refused by the socket (EAGAIN). That must still
    say the key was refused, not "the agent is not reading" (which CI saw after a revocation)."""
    keys.add_controller(keydir, "stranger")
    assert keys.revoke_controller(keydir, "stranger") == 1
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        other = RawController(ctx, agent.endpoint, keydir)
        async with executor(agent.endpoint, keydir, controller="stranger") as stranger:
            link = stranger._ensure_link()
            # The monitor's events are held back until the executor has looked once: the
            # interleaving CI met, where the refusal event came just after that look.
            held: list[list[bytes]] = []
            deliver = stranger.on_event
            stranger.on_event = lambda link, frames: held.append(frames)  # type: ignore[method-assign]
            dropped = False
            for _ in range(200):  # well under the pipe's 1,000 messages: Again is the refusal
                try:
                    link.dealer.sock.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    dropped = True
                    break
                other.counters()  # a round trip to the agent between two looks
            assert dropped, "the socket kept the refused connection's pipe"
            looks = 0
            catch_up = link.catch_up

            def late_catch_up() -> None:
                nonlocal looks
                looks += 1
                if looks > 1:
                    stranger.on_event = deliver  # type: ignore[method-assign]
                    catch_up()
                    for frames in held:
                        deliver(link, frames)

            link.catch_up = late_catch_up  # type: ignore[method-assign]
            with pytest.raises(TransportError, match="refused our key") as refused:
                await asyncio.wait_for(stranger.run("true"), 15)
            assert refused.value.may_have_run is False


@pytest.mark.asyncio
async def test_a_controller_that_vanishes_has_its_commands_killed(keydir: Path) -> None:
    with running_agent(keydir, "--controller-timeout", "0.5") as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        raw.request(b"orphan", wire.RUN, {"command": "sleep 300 & echo $!; wait", "stream": True})
        pid = int(raw.reply().frames[1])
        raw.sock.close(linger=0)  # the controller is gone without a word
        assert wait_gone(pid, timeout_s=15), "the orphaned command was not killed"
        counters = RawController(ctx, agent.endpoint, keydir).counters()
    assert counters["controller-lost"] == 1


@pytest.mark.asyncio
async def test_a_restarted_agent_kills_what_its_killed_predecessor_left_running(
    keydir: Path,
) -> None:
    """An agent SIGKILLed mid-command left the command running, unknown to its successor; a
    fallback retry could then run a second copy beside it."""
    bind = f"tcp://127.0.0.1:{free_port()}"
    with running_agent(keydir, bind=bind) as first, zmq.Context() as ctx:
        raw = RawController(ctx, first.endpoint, keydir)
        raw.request(b"orphan", wire.RUN, {"command": "sleep 300 & echo $!; wait", "stream": True})
        pid = int(raw.reply().frames[1])
        raw.sock.close(linger=0)
        first.kill(signal.SIGKILL)
    assert not await asyncio.to_thread(wait_gone, pid, 0.5)  # the orphan, still running
    with running_agent(keydir, bind=bind) as second, zmq.Context() as ctx:
        counters = RawController(ctx, second.endpoint, keydir).counters()
    assert await asyncio.to_thread(wait_gone, pid, 10), "the orphan still runs"
    assert counters.get("reaped") == 1


def test_the_ready_file_holds_the_endpoint_once_the_agent_serves_and_goes_with_it(
    keydir: Path, tmp_path: Path
) -> None:
    """A script waits for the file instead of parsing a log line."""
    ready = tmp_path / "agent.ready"
    with running_agent(keydir, "--ready-file", str(ready)) as agent:
        assert ready.read_text() == agent.endpoint + "\n"  # written before the ready line
        agent.kill(signal.SIGTERM)
    assert not ready.exists()
