"""Coordination tests: scheduled runs across simulated nodes, through SSH and ZeroMQ, with failures.

Every node is a real agent process; SSH is a real sshd; failures are real signals. Run with the
rest of the suite (`make test`), or alone: `.venv/bin/python -m pytest
03-cluster-runner-simulation/test_coordination.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import skip_here_fail_on_ci
from zcl import keys
from zcl.circuit_breaker import CircuitBreaker
from zcl.errors import CircuitOpenError, TransportError
from zcl.executor_options import ZmqExecutorOptions
from zcl.journal import FileJournalWriter, read_journal
from zcl.schedules import run_schedule
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl.zmq_operational_context import build_zmq_context
from zcl_lab.openssh_server import sshd_missing_reason
from zcl_lab.simulated_cluster import SimulatedCluster, both_transports


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[SimulatedCluster]:
    skip_here_fail_on_ci(sshd_missing_reason(), "the coordination tests")
    with SimulatedCluster(nodes=getattr(request, "param", 4)) as simulated:
        yield simulated


def probe(
    cluster: SimulatedCluster, node: str, breaker: CircuitBreaker | None = None, **options: Any
) -> ZmqNodeExecutor:
    """An executor of our own to one node, to watch its agent while a run goes on."""
    controller = keys.load_controller_keys(keys.controller_dir(cluster.keydir, "runner"))
    return ZmqNodeExecutor(
        node,
        cluster.agents[node].endpoint,
        controller,
        breaker=breaker,
        options=ZmqExecutorOptions(**options),
    )


def state_of(breaker: CircuitBreaker) -> str:
    return breaker.state  # through a call: mypy would narrow the property between two reads


async def wait_running(cluster: SimulatedCluster, node: str, count: int = 1) -> None:
    async with probe(cluster, node) as watcher:
        while (await watcher.ping())["running"] < count:
            pass  # each ping is a round trip: this waits on the agent, not on a clock


@pytest.mark.parametrize("cluster", [16], indirect=True)
@pytest.mark.asyncio
async def test_the_same_run_gives_the_same_journal_over_ssh_and_zeromq(
    cluster: SimulatedCluster,
) -> None:
    outcome = await both_transports(cluster)
    assert outcome["records"] == 16 + 2 * 24 + 4 * 16  # singles, 24 pairs, four group sizes
    assert outcome["journals_equal"]
    zmq_records = read_journal(cluster.dir / "zmq-journal.jsonl")
    assert {r["transport"] for r in zmq_records} == {"zmq"}
    assert all(r["passed"] for r in zmq_records)


async def run_killing_one_agent(
    cluster: SimulatedCluster, victim: str, journal: Path, **context: Any
) -> dict[str, dict[str, Any]]:
    """All servers, with `victim`'s agent SIGKILLed while its test runs; records by node."""
    async with build_zmq_context(
        cluster.descriptor(),
        None,
        FileJournalWriter(journal),
        options=ZmqExecutorOptions(agent_silence_s=1.0),
        **context,
    ) as ctx:
        run = asyncio.create_task(
            run_schedule(ctx, "all_servers", program=cluster.perftest, options="--duration 2")
        )
        await wait_running(cluster, victim)
        cluster.agents[victim].kill(signal.SIGKILL)
        await asyncio.wait_for(run, 30)
    return {r["node"]: r for r in read_journal(journal)}


@pytest.mark.asyncio
async def test_an_agent_killed_mid_schedule_fails_its_test_and_the_rest_goes_on(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    records = await run_killing_one_agent(cluster, "node02", tmp_path / "journal.jsonl")
    assert sorted(records) == cluster.node_ids
    assert not records["node02"]["passed"]
    assert "TransportError" in records["node02"]["error"]
    assert all(records[n]["passed"] for n in cluster.node_ids if n != "node02")


@pytest.mark.asyncio
async def test_with_fallback_a_test_that_may_still_run_is_not_run_twice(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    """The killed agent's perf test may still be running: SSH must not start a second copy."""
    records = await run_killing_one_agent(
        cluster, "node03", tmp_path / "journal.jsonl", fallback=True
    )
    assert not records["node03"]["passed"] and "may still run" in records["node03"]["error"]
    assert all(records[n]["passed"] for n in cluster.node_ids if n != "node03")


@pytest.mark.asyncio
async def test_with_fallback_and_second_copies_allowed_a_killed_agent_is_served_over_ssh(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    records = await run_killing_one_agent(
        cluster, "node03", tmp_path / "journal.jsonl", fallback=True, allow_second_copy=True
    )
    assert all(record["passed"] for record in records.values())
    assert records["node03"]["transport"] == "ssh"
    assert {records[n]["transport"] for n in cluster.node_ids if n != "node03"} == {"zmq"}


@pytest.mark.asyncio
async def test_the_descriptor_chooses_each_nodes_transport(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    canary = cluster.descriptor(transports={"node01": "ssh"})
    async with build_zmq_context(canary, None, FileJournalWriter(journal)) as context:
        await run_schedule(context, "all_servers", program=cluster.perftest)
    transports = {r["node"]: r["transport"] for r in read_journal(journal)}
    assert transports == {n: "ssh" if n == "node01" else "zmq" for n in cluster.node_ids}


@pytest.mark.asyncio
async def test_a_frozen_agent_opens_the_circuit_and_a_probe_closes_it(
    cluster: SimulatedCluster,
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1.0)
    frozen = cluster.agents["node01"]
    async with probe(cluster, "node01", agent_silence_s=0.5, breaker=breaker) as node:
        await node.run("true")
        frozen.signal(signal.SIGSTOP)
        try:
            for _ in range(2):
                with pytest.raises(TransportError, match="no answer"):
                    await asyncio.wait_for(node.run("true", timeout_s=5), 10)
            with pytest.raises(CircuitOpenError):
                await asyncio.wait_for(node.run("true"), 0.1)
        finally:
            frozen.signal(signal.SIGCONT)
        await asyncio.sleep(breaker.retry_in())  # the cooldown itself is what is tested here
        assert state_of(breaker) == "half-open"
        assert (await node.run("echo probe")).stdout == b"probe\n"
        assert state_of(breaker) == "closed"


@pytest.mark.asyncio
async def test_groups_never_share_a_node_and_cancelling_kills_remote_commands(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    async with build_zmq_context(
        cluster.descriptor(), None, FileJournalWriter(tmp_path / "j.jsonl")
    ) as context:
        runner = await run_schedule(
            context, "increasing_size_groups", program=cluster.perftest, limit=8
        )
        for node in cluster.node_ids:
            spans = sorted((s, e) for group, s, e in runner.history if node in group)
            assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
        hanging = asyncio.create_task(
            run_schedule(context, "all_servers", program=cluster.perftest, options="--hang")
        )
        for node in cluster.node_ids:
            await wait_running(cluster, node)
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
    for node in cluster.node_ids:
        async with probe(cluster, node) as watcher:
            while (answer := await watcher.ping())["running"]:
                pass
            assert answer["counters"]["cancelled"] == 1
