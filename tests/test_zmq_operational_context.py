"""build_zmq_context and build_ssh_context: nodes, executors, cached configs, and closing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster_sim import keys
from cluster_sim.journal import FileJournalWriter, read_journal
from cluster_sim.lab.openssh_server import OpenSshServer
from cluster_sim.operational_context import run_on_group
from cluster_sim.protocols import ClusterDescriptor, OperationalContextProtocol, TransportError
from cluster_sim.ssh_context import build_ssh_context
from cluster_sim.zmq_node_executor import ZmqNodeExecutor
from cluster_sim.zmq_operational_context import build_zmq_context
from tests.agents import executor, running_agent


def one_node(sshd: OpenSshServer, keydir: Path, endpoint: str) -> ClusterDescriptor:
    port = int(endpoint.rsplit(":", 1)[1])
    nodes = (sshd.node("node1", agent_port=port), sshd.node("node2", agent_port=1))
    return ClusterDescriptor(nodes, zmq_keys_dir=str(keys.controller_dir(keydir, "runner")))


@pytest.mark.asyncio
async def test_the_zmq_context_serves_nodes_executors_configs_and_the_journal(
    sshd: OpenSshServer, keydir: Path, tmp_path: Path
) -> None:
    with running_agent(keydir) as agent:
        descriptor = one_node(sshd, keydir, agent.endpoint)
        only_node1 = lambda node: node.node_id == "node1"  # noqa: E731
        async with build_zmq_context(
            descriptor, only_node1, FileJournalWriter(tmp_path / "j")
        ) as ctx:
            context: OperationalContextProtocol = ctx
            assert [node.node_id for node in context.nodes] == ["node1"]
            with pytest.raises(KeyError, match="node2"):
                context.executor("node2")
            node = context.executor("node1")
            assert context.executor("node1") is node
            configs = await asyncio.gather(*(context.system_config("node1") for _ in range(5)))
            assert all(c == configs[0] for c in configs)
            await context.journal().write(
                {"node": "node1", "result": (await node.run("echo ok")).text()}
            )
            asked = (await node.ping())["counters"]  # type: ignore[attr-defined]
        assert isinstance(node, ZmqNodeExecutor) and node.closed
    assert asked.get("sysinfo", 0) == 1  # five callers, one question to the node
    assert read_journal(tmp_path / "j")[0]["result"] == "ok\n"


@pytest.mark.asyncio
async def test_everything_is_closed_on_error_and_on_cancellation(
    sshd: OpenSshServer, keydir: Path, tmp_path: Path
) -> None:
    with running_agent(keydir) as agent:
        descriptor = one_node(sshd, keydir, agent.endpoint)
        journal = FileJournalWriter(tmp_path / "j")
        with pytest.raises(RuntimeError, match="boom"):
            async with build_zmq_context(descriptor, None, journal) as context:
                node = context.executor("node1")
                await node.run("true")
                raise RuntimeError("boom")
        assert isinstance(node, ZmqNodeExecutor) and node.closed and journal.file.closed

        started = asyncio.Event()

        async def cancelled_run() -> None:
            async with build_zmq_context(
                descriptor, None, FileJournalWriter(tmp_path / "k")
            ) as ctx:
                runner = ctx.executor("node1")
                running = asyncio.create_task(runner.run("sleep 30"))
                while (await runner.ping())["running"] < 1:  # type: ignore[attr-defined]
                    pass
                started.set()
                await running

        task = asyncio.create_task(cancelled_run())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with executor(agent.endpoint, keydir) as watcher:
            while (answer := await watcher.ping())["running"]:
                pass  # each ping is a round trip to the agent
        assert answer["counters"]["cancelled"] == 1  # killed on the node, not orphaned


@pytest.mark.asyncio
async def test_the_ssh_context_has_the_same_shape(
    sshd: OpenSshServer, keydir: Path, tmp_path: Path
) -> None:
    descriptor = one_node(sshd, keydir, "tcp://127.0.0.1:1")
    async with build_ssh_context(descriptor, None, FileJournalWriter(tmp_path / "j")) as ctx:
        context: OperationalContextProtocol = ctx
        result = await context.executor("node2").run("echo over ssh")
        config = await context.system_config("node2")
    assert (result.stdout, result.transport) == (b"over ssh\n", "ssh")
    assert config.cpus >= 1


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_run_group_gives_each_node_its_result_or_its_error_within_a_concurrency_limit(
    sshd: OpenSshServer, keydir: Path, tmp_path: Path
) -> None:
    """Every runner wrote its own gather; one call now runs a command on a group of nodes."""
    keys.add_node(keydir, "node2")
    with running_agent(keydir) as agent:
        port = int(agent.endpoint.rsplit(":", 1)[1])
        nodes = (
            sshd.node("node1", agent_port=port),
            sshd.node("node2", agent_port=1),  # nothing listens there
            sshd.node("node3", transport="ssh"),
        )
        descriptor = ClusterDescriptor(
            nodes, zmq_keys_dir=str(keys.controller_dir(keydir, "runner"))
        )
        async with build_zmq_context(
            descriptor, None, FileJournalWriter(tmp_path / "j"), agent_silence_s=1
        ) as ctx:
            results = await asyncio.wait_for(
                ctx.run_group(["node1", "node2", "node3"], "echo $((6*7))", max_concurrency=2),
                60,
            )
            fed = await asyncio.wait_for(
                ctx.run_group(["node1", "node3"], "cat", input=b"to each\n", kill_grace_s=1), 60
            )
    assert list(results) == ["node1", "node2", "node3"]  # in the order asked
    assert results["node1"].stdout == results["node3"].stdout == b"42\n"  # type: ignore[union-attr]
    assert fed["node1"].stdout == fed["node3"].stdout == b"to each\n"  # type: ignore[union-attr]
    assert isinstance(results["node2"], TransportError)
    assert results["node1"].transport == "zmq" and results["node3"].transport == "ssh"  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_run_group_never_has_more_in_flight_than_asked() -> None:
    in_flight, most = 0, 0

    class Counting:
        node_id = "n"

        async def run(self, command: str, **_: object) -> str:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0)  # let the others start if they may
            await asyncio.sleep(0)
            in_flight -= 1
            return command

    counting = Counting()
    results = await run_on_group(
        {f"n{i}": counting for i in range(10)},  # type: ignore[misc]
        "x",
        max_concurrency=3,
    )
    assert len(results) == 10 and most == 3
