"""build_zmq_context and build_ssh_context: nodes, executors, cached configs, and closing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agents import executor, free_port, running_agent
from zcl import keys
from zcl.errors import ExecutorError, TransportError
from zcl.executor_options import ZmqExecutorOptions
from zcl.journal import FileJournalWriter, read_journal
from zcl.operational_context import run_on_group
from zcl.protocols import ClusterDescriptor, NodeDescriptor, OperationalContextProtocol
from zcl.ssh_context import build_ssh_context
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl.zmq_operational_context import build_zmq_context
from zcl_lab.openssh_server import OpenSshServer


def one_node(sshd: OpenSshServer, keydir: Path, endpoint: str) -> ClusterDescriptor:
    """node1 behind the agent, and node2 where nothing listens (pinned: a context checks the
    pins of its nodes when it is built)."""
    keys.add_node(keydir, "node2")
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
            descriptor,
            None,
            FileJournalWriter(tmp_path / "j"),
            options=ZmqExecutorOptions(agent_silence_s=1),
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


def unreachable_cluster(count: int) -> ClusterDescriptor:
    port = free_port()  # nothing listens there: every command fails, none may fail oddly
    nodes = tuple(NodeDescriptor(f"n{i:03d}", "127.0.0.1", agent_port=port) for i in range(count))
    return ClusterDescriptor(nodes)


@pytest.mark.asyncio
async def test_a_context_holds_the_sockets_of_hundreds_of_nodes(tmp_path: Path) -> None:
    """libzmq's default context allows 1,023 sockets; each node's link takes three (its DEALER
    and the two ends of its monitor), so a controller of about 340 nodes or more failed with
    'Too many open files' raised out of run_group instead of each node's own error."""
    journal = FileJournalWriter(tmp_path / "journal.jsonl")
    descriptor = unreachable_cluster(600)
    async with build_zmq_context(descriptor, None, journal, insecure=True) as context:
        outcomes = await context.run_group(
            [node.node_id for node in descriptor.nodes], "true", max_concurrency=600, timeout_s=1
        )
    assert len(outcomes) == 600
    assert all(isinstance(outcome, ExecutorError) for outcome in outcomes.values())
    assert not [o for o in outcomes.values() if "Too many open files" in str(o)]


OPEN_FILES_PROBE = """
import asyncio, resource, sys, tempfile
from pathlib import Path
from zcl.journal import FileJournalWriter
from zcl.protocols import (ClusterDescriptor, NodeDescriptor)
from zcl.errors import ExecutorError
from zcl.zmq_operational_context import build_zmq_context

port, soft, hard = (int(arg) for arg in sys.argv[1:])
hard = hard or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
nodes = tuple(NodeDescriptor(f"n{i:03d}", "127.0.0.1", agent_port=port) for i in range(150))

async def main():
    with tempfile.TemporaryDirectory() as scratch:
        journal = FileJournalWriter(Path(scratch) / "j.jsonl")
        async with build_zmq_context(
            ClusterDescriptor(nodes), None, journal, insecure=True, raise_open_files=True
        ) as context:
            outcomes = await context.run_group(
                [n.node_id for n in nodes], "true", max_concurrency=150, timeout_s=1
            )
    assert all(isinstance(o, ExecutorError) for o in outcomes.values()), outcomes
    short = sum("cannot open a socket: Too many open files" in str(o) for o in outcomes.values())
    print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], short)

asyncio.run(main())
"""


def open_files_probe(soft: int, hard: int = 0) -> tuple[int, int]:
    """150 unreachable nodes under an open-file limit: the soft limit after the run, and how
    many nodes could not have a socket."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", OPEN_FILES_PROBE, str(free_port()), str(soft), str(hard)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:  # a socket left open holds the context's term() forever
        pytest.fail(f"a controller of 150 nodes with {soft} open files hung")
    assert done.returncode == 0, done.stderr[-2000:]
    limit, short = done.stdout.split()
    return int(limit), int(short)


def test_a_context_raises_its_open_file_limit_to_what_its_nodes_need() -> None:
    """With the usual soft limit (1,024, here lowered to 256), a controller of a few hundred
    nodes ran out of descriptors: about four per node (a TCP connection and the signalling of
    three sockets)."""
    limit, short = open_files_probe(soft=256)
    assert limit > 256 and short == 0


def test_nodes_past_a_hard_limit_fail_one_by_one_and_nothing_hangs() -> None:
    """Where the operator's hard limit is too low, the nodes past it get a TransportError each
    (never run: may be tried elsewhere); before, the ZMQError escaped run_group and the half-made
    link held the context's term() forever."""
    limit, short = open_files_probe(soft=200, hard=200)
    assert limit == 200 and short > 0
