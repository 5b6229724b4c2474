"""Schedules from labels, and the runner that keeps a node in one group at a time."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from zcl.protocols import NodeDescriptor
from zcl.schedules import (
    nodes_concurrency_set,
    perftest_command,
    schedule_all_servers,
    schedule_increasing_size_groups,
    schedule_leaf_to_leaf_pairs,
)

NODES = [NodeDescriptor(f"n{i}", "h", labels={"leaf": f"L{i % 3}"}) for i in range(8)]


def test_schedule_shapes() -> None:
    assert schedule_all_servers(NODES) == [(n.node_id,) for n in NODES]
    pairs = schedule_leaf_to_leaf_pairs(NODES)
    leaf = {n.node_id: n.labels["leaf"] for n in NODES}
    assert pairs and all(leaf[a] != leaf[b] for a, b in pairs)
    assert len(pairs) == len(set(pairs))
    groups = schedule_increasing_size_groups(NODES)
    assert [len(g) for g in groups] == [2, 2, 2, 2, 4, 4, 8]
    assert schedule_increasing_size_groups(NODES[:1]) == []


def test_perftest_roles_follow_the_group() -> None:
    assert "--role single --peers ''" in perftest_command("p", "t", "n1", ("n1",), "")
    assert "--role server --peers n2" in perftest_command("p", "t", "n1", ("n1", "n2"), "")
    assert "--role client --peers n1" in perftest_command("p", "t", "n2", ("n1", "n2"), "")


@pytest.mark.asyncio
async def test_a_node_is_never_in_two_running_groups_and_the_limit_holds() -> None:
    groups = schedule_leaf_to_leaf_pairs(NODES) + schedule_increasing_size_groups(NODES)
    running: list[int] = []

    async def work() -> None:
        running.append(1)
        assert len(running) <= 3
        await asyncio.sleep(0.001)  # the "test" itself: it takes a little while
        running.pop()

    async with nodes_concurrency_set(limit=3) as runner:
        for group in groups:
            await runner.submit(group, work)
    assert len(runner.history) == len(groups)
    for node in NODES:
        spans = sorted((s, e) for g, s, e in runner.history if node.node_id in g)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


@pytest.mark.asyncio
async def test_cancelling_the_run_cancels_every_running_group() -> None:
    cancelled: list[str] = []
    started: list[str] = []
    both_running = asyncio.Event()

    async def forever(name: str) -> None:
        started.append(name)
        if len(started) == 2:
            both_running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def run() -> None:
        async with nodes_concurrency_set(limit=4) as runner:
            await runner.submit(("a",), lambda: forever("a"))
            await runner.submit(("b",), lambda: forever("b"))

    task = asyncio.create_task(run())
    await asyncio.wait_for(both_running.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["a", "b"]
