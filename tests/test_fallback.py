"""The fallback executor: ZeroMQ first, SSH while the node's ZeroMQ circuit is open."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import zmq

from tests.agents import RawController, executor, free_port, running_agent
from tests.helpers import eventually
from zcl import keys
from zcl.circuit_breaker import CircuitBreaker
from zcl.errors import TransportError
from zcl.fallback import FallbackExecutor
from zcl.ssh_context import NodeExecutorSSH
from zcl_lab.openssh_server import OpenSshServer


@pytest.mark.asyncio
async def test_zeromq_serves_while_it_can(sshd: OpenSshServer, keydir: Path) -> None:
    with running_agent(keydir) as agent:
        both = FallbackExecutor(
            executor(agent.endpoint, keydir), NodeExecutorSSH.for_node(sshd.node("node1"))
        )
        result = await both.run("echo hi")
        config = await both.system_config()
        await both.close()
    assert (result.transport, result.stdout) == ("zmq", b"hi\n")
    assert both.served == {"zmq": 2, "ssh": 0} and config.cpus >= 1  # the command and the probe


@pytest.mark.asyncio
async def test_ssh_serves_when_zeromq_fails_and_while_the_circuit_is_open(
    sshd: OpenSshServer, keydir: Path, shared_dir: Path
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=60)
    dead = executor(f"tcp://127.0.0.1:{free_port()}", keydir, agent_silence_s=0.3, breaker=breaker)
    both = FallbackExecutor(dead, NodeExecutorSSH.for_node(sshd.node("node1")))
    first = await both.run("echo one")  # tried over ZeroMQ, failed, served over SSH
    second = await both.run("echo two")  # the circuit is open: straight to SSH
    assert (first.transport, first.stdout, second.transport) == ("ssh", b"one\n", "ssh")
    assert both.served == {"zmq": 0, "ssh": 2}
    source = shared_dir / "f"
    source.write_text("x")
    await both.put_file(source, str(shared_dir / "copy"))
    assert (shared_dir / "copy").read_text() == "x"
    await both.close()


@pytest.mark.asyncio
async def test_without_retry_the_zeromq_error_reaches_the_caller(
    sshd: OpenSshServer, keydir: Path
) -> None:
    dead = executor(f"tcp://127.0.0.1:{free_port()}", keydir, agent_silence_s=0.3)
    both = FallbackExecutor(
        dead, NodeExecutorSSH.for_node(sshd.node("node1")), retry_over_ssh=False
    )
    with pytest.raises(TransportError, match="cannot connect"):
        await both.run("echo once at most")
    assert both.served == {"zmq": 0, "ssh": 0}
    await both.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("allow", [False, True])
async def test_a_command_that_may_still_run_is_not_started_again_over_ssh(
    sshd: OpenSshServer, keydir: Path, allow: bool
) -> None:
    """An agent killed mid-command used to mean a second copy over SSH beside the first (two
    perf tests at once). Now SSH takes over only what never reached the agent, unless the
    caller allows a second copy."""
    bind = f"tcp://127.0.0.1:{free_port()}"
    both = FallbackExecutor(
        executor(bind, keydir, agent_silence_s=0.5),
        NodeExecutorSSH.for_node(sshd.node("node1")),
        allow_second_copy=allow,
    )
    started = asyncio.Event()
    try:
        with running_agent(keydir, bind=bind) as agent:
            running = asyncio.create_task(
                both.run("echo started; sleep 3; echo done", on_output=lambda *_: started.set())
            )
            await asyncio.wait_for(started.wait(), 20)
            agent.kill()
        if allow:
            result = await asyncio.wait_for(running, 30)
            assert (result.transport, result.stdout) == ("ssh", b"started\ndone\n")
        else:
            with pytest.raises(TransportError, match="may still run"):
                await asyncio.wait_for(running, 30)
            assert both.served["ssh"] == 0
    finally:
        await both.close()


# -- what a rolling restart produces (issue 22, finding 2) -------------------------------------


@pytest.mark.asyncio
async def test_a_call_after_a_clean_agent_stop_goes_over_ssh_without_waiting_for_silence(
    sshd: OpenSshServer, keydir: Path
) -> None:
    """The agent stopped cleanly (SIGTERM, nothing running) while we were connected: the next
    call never reached an agent, so SSH serves it, at once. The silence allowance is set far
    above the wait, so an executor that waited for the agent's silence would fail here."""
    bind = f"tcp://127.0.0.1:{free_port()}"
    both = FallbackExecutor(
        executor(bind, keydir, agent_silence_s=60), NodeExecutorSSH.for_node(sshd.node("node1"))
    )
    try:
        with running_agent(keydir, bind=bind) as agent:
            assert (await both.run("true")).transport == "zmq"
            agent.kill(signal.SIGTERM)
            assert agent.process.returncode == 0
        result = await asyncio.wait_for(both.run("echo after"), 10)
        assert (result.transport, result.stdout) == ("ssh", b"after\n")
    finally:
        await both.close()


@pytest.mark.asyncio
async def test_a_call_refused_for_a_key_revoked_on_an_open_session_goes_over_ssh(
    sshd: OpenSshServer, keydir: Path
) -> None:
    """The agent refused the request (our key was revoked while connected): it never ran, so
    the refusal says may_have_run=False and the fallback hands the command to SSH."""
    keys.add_controller(keydir, "watcher")
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        watcher = RawController(ctx, agent.endpoint, keydir, "watcher")
        zmq_side = executor(agent.endpoint, keydir)
        both = FallbackExecutor(zmq_side, NodeExecutorSSH.for_node(sshd.node("node1")))
        try:
            assert (await both.run("true")).transport == "zmq"
            before = await asyncio.to_thread(watcher.counters)
            keys.revoke_controller(keydir, "runner")
            eventually(
                lambda: (
                    watcher.counters().get("authorized-keys.changed", 0)
                    > before.get("authorized-keys.changed", 0)
                ),
                10,
                "the agent takes the revocation in",
            )
            with pytest.raises(TransportError, match="refused our key") as refused:
                await asyncio.wait_for(zmq_side.run("true"), 10)  # on the open session
            assert refused.value.may_have_run is False
            result = await asyncio.wait_for(both.run("echo over ssh"), 10)
            assert (result.transport, result.stdout) == ("ssh", b"over ssh\n")
        finally:
            await both.close()
