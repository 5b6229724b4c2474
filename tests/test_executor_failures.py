"""Every way the executor, the contexts and the journal fail is an ExecutorError or a
JournalError that says why, and nothing hangs on the way out (issue 15, part 1), driven
through `async with` and a timeout as a runner would meet them."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.agents import free_port, running_agent
from zcl import keys
from zcl.errors import ExecutorError, JournalError, TransportError
from zcl.executor_options import ZmqExecutorOptions
from zcl.fallback import FallbackExecutor
from zcl.journal import FileJournalWriter
from zcl.protocols import ClusterDescriptor, NodeDescriptor
from zcl.ssh_context import NodeExecutorSSH
from zcl.zmq_journal import ZmqJournalWriter
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl.zmq_operational_context import build_zmq_context
from zcl_lab.openssh_server import OpenSshServer

EXIT_BUDGET_S = 20  # a hang fails the test instead of the suite


def controller(keydir: Path) -> keys.ControllerKeys:
    return keys.load_controller_keys(keys.controller_dir(keydir, "runner"))


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_node_with_no_pinned_key_is_an_executor_error_and_nothing_hangs(
    keydir: Path, tmp_path: Path
) -> None:
    """KeyFileError used to escape run(), and the socket made before the key lookup kept
    zmq.Context.term() waiting for ever as the context exited."""
    descriptor = ClusterDescriptor(
        (NodeDescriptor("stranger", "127.0.0.1", agent_port=1),),
        zmq_keys_dir=str(keys.controller_dir(keydir, "runner")),
    )

    async def use() -> None:
        async with build_zmq_context(descriptor, None, FileJournalWriter(tmp_path / "j")) as ctx:
            await ctx.executor("stranger").run("true")

    with pytest.raises(ExecutorError, match="no pinned key for node 'stranger'"):
        await asyncio.wait_for(use(), EXIT_BUDGET_S)

    async def alone() -> None:
        async with ZmqNodeExecutor("stranger", "tcp://127.0.0.1:1", controller(keydir)) as one:
            await one.run("true")

    with pytest.raises(ExecutorError, match="no pinned key"):
        await asyncio.wait_for(alone(), EXIT_BUDGET_S)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_an_unknown_node_is_an_executor_error(keydir: Path, tmp_path: Path) -> None:
    descriptor = ClusterDescriptor((), zmq_keys_dir=str(keys.controller_dir(keydir, "runner")))
    async with build_zmq_context(descriptor, None, FileJournalWriter(tmp_path / "j")) as ctx:
        with pytest.raises(ExecutorError, match="nowhere"):
            ctx.executor("nowhere")
        with pytest.raises(KeyError):  # what it raised before, still caught by old callers
            ctx.executor("nowhere")


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_no_keys_against_an_agent_that_wants_them_says_so(keydir: Path) -> None:
    with running_agent(keydir) as agent:
        async with ZmqNodeExecutor(
            "node1", agent.endpoint, None, options=ZmqExecutorOptions(agent_silence_s=1)
        ) as plain:
            with pytest.raises(TransportError) as refused:
                await asyncio.wait_for(plain.run("true"), EXIT_BUDGET_S)
    assert "keys=None" in str(refused.value) and "pinned" not in str(refused.value)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_journal_used_after_its_context_closed_it_says_so_at_once(
    keydir: Path, tmp_path: Path
) -> None:
    """Leaving a context closes the journal it was given; a later write raised a raw
    ZMQError ('Socket operation on non-socket') and close() then waited 30 s."""
    keys.add_node(keydir, "collector")
    writer = ZmqJournalWriter("tcp://127.0.0.1:1", controller(keydir))
    descriptor = ClusterDescriptor((), zmq_keys_dir=str(keys.controller_dir(keydir, "runner")))
    async with build_zmq_context(descriptor, None, writer):
        pass
    with pytest.raises(JournalError, match="closed"):
        await asyncio.wait_for(writer.write({"record_id": "late"}), EXIT_BUDGET_S)
    await asyncio.wait_for(writer.close(), 2)  # closing again returns at once


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_draining_agent_hands_the_command_to_ssh(sshd: OpenSshServer, keydir: Path) -> None:
    """An agent stopping (SIGTERM: systemctl stop or restart) refuses new commands with
    shutting-down; the fallback used to pass that on instead of taking over."""
    with running_agent(keydir, "--drain-timeout", "30") as agent:
        runner = controller(keydir)
        over_zmq = ZmqNodeExecutor("node1", agent.endpoint, runner)
        over_ssh = NodeExecutorSSH.for_node(sshd.node("node1"))
        both = FallbackExecutor(over_zmq, over_ssh)
        try:
            holding = asyncio.create_task(over_zmq.run("sleep 5", timeout_s=20))
            assert (await both.run("echo warm")).transport == "zmq"
            agent.process.send_signal(signal.SIGTERM)  # drains: `sleep 5` keeps it alive
            served = None
            for _ in range(200):  # until the agent has seen the signal: each try is a request
                served = await asyncio.wait_for(both.run("echo hi"), EXIT_BUDGET_S)
                if served.transport == "ssh":
                    break
            assert served is not None and served.transport == "ssh"
            assert served.stdout == b"hi\n"
            holding.cancel()
        finally:
            await both.close()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_closed_port_is_reported_at_once_not_after_the_silence_allowance(
    keydir: Path,
) -> None:
    """Nothing listening used to look like a silent agent: the call waited for the silence
    allowance. A refused connection is known at once, as SSH knows it."""
    closed = f"tcp://127.0.0.1:{free_port()}"
    async with ZmqNodeExecutor(
        "node1", closed, controller(keydir), options=ZmqExecutorOptions(agent_silence_s=60)
    ) as node:
        with pytest.raises(TransportError, match="cannot connect") as refused:
            await asyncio.wait_for(node.run("true"), 15)  # well inside the 60 s allowance
    assert not refused.value.may_have_run  # it never reached an agent: SSH may take it
