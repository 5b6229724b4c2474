"""Schedules: which nodes test together, and a runner that never puts a node in two tests at once.

A schedule is a list of groups of node ids; each group runs one test together (one node alone,
a pair across two leaf switches, or a growing group). `nodes_concurrency_set()` runs groups as
soon as all their nodes are free, at most `limit` groups at a time; leaving the `async with`
waits for every group, and cancelling the run cancels every group, which cancels their remote
commands (the executors kill them on the nodes) instead of leaving them running.

`run_schedule()` is the perf-test loop cluster_runner runs: each node of a group runs the perf
test command, and each result becomes a journal record. A node that cannot be reached gives a
failed record with the reason; the schedule goes on with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zcl.errors import ExecutorError
from zcl.protocols import NodeDescriptor, OperationalContextProtocol

Group = tuple[str, ...]
LEAF_LABEL = "leaf"


def schedule_all_servers(nodes: Sequence[NodeDescriptor]) -> list[Group]:
    """Every node on its own."""
    return [(node.node_id,) for node in nodes]


def schedule_leaf_to_leaf_pairs(nodes: Sequence[NodeDescriptor]) -> list[Group]:
    """Pairs of nodes under different leaf switches: for each pair of leaves, their nodes zipped."""
    leaves: dict[str, list[str]] = {}
    for node in nodes:
        leaves.setdefault(node.labels.get(LEAF_LABEL, "?"), []).append(node.node_id)
    pairs: list[Group] = []
    for left, right in itertools.combinations(sorted(leaves), 2):
        pairs.extend(zip(leaves[left], leaves[right], strict=False))
    return pairs


def schedule_increasing_size_groups(nodes: Sequence[NodeDescriptor]) -> list[Group]:
    """Groups of 2, 4, 8 ... nodes, each size covering the nodes in order."""
    ids = [node.node_id for node in nodes]
    groups: list[Group] = []
    size = 2
    while size <= len(ids):
        groups.extend(tuple(ids[i : i + size]) for i in range(0, len(ids) - size + 1, size))
        size *= 2
    return groups


SCHEDULES: dict[str, Callable[[Sequence[NodeDescriptor]], list[Group]]] = {
    "all_servers": schedule_all_servers,
    "leaf_to_leaf_pairs": schedule_leaf_to_leaf_pairs,
    "increasing_size_groups": schedule_increasing_size_groups,
}


@dataclass
class NodesConcurrencySet:
    limit: int
    busy: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    history: list[tuple[Group, float, float]] = field(default_factory=list)  # group, start, end
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def submit(self, group: Group, work: Callable[[], Awaitable[None]]) -> None:
        """Start `work` once every node of `group` is free and fewer than `limit` groups run."""
        async with self.changed:
            await self.changed.wait_for(
                lambda: len(self.tasks) < self.limit and self.busy.isdisjoint(group)
            )
            self.busy.update(group)
            task = asyncio.create_task(self._run(group, work))
            self.tasks.add(task)

    async def _run(self, group: Group, work: Callable[[], Awaitable[None]]) -> None:
        started = time.monotonic()
        try:
            await work()
        finally:
            self.history.append((group, started, time.monotonic()))
            async with self.changed:
                self.busy.difference_update(group)
                self.tasks.discard(asyncio.current_task())
                self.changed.notify_all()


@contextlib.asynccontextmanager
async def nodes_concurrency_set(limit: int = 8) -> AsyncIterator[NodesConcurrencySet]:
    runner = NodesConcurrencySet(limit)
    try:
        yield runner
        while runner.tasks:
            await asyncio.gather(*list(runner.tasks))
    finally:
        for task in list(runner.tasks):  # on error or cancellation: stop every group
            task.cancel()
        await asyncio.gather(*list(runner.tasks), return_exceptions=True)


def perftest_command(program: str, test: str, node: str, group: Group, options: str) -> str:
    role = "single" if len(group) == 1 else ("server" if node == group[0] else "client")
    peers = ",".join(n for n in group if n != node)
    return (
        f"{program} --test {shlex.quote(test)} --node {shlex.quote(node)} --role {role}"
        f" --peers {shlex.quote(peers)} {options}".strip()
    )


async def run_schedule(
    context: OperationalContextProtocol,
    schedule: str,
    *,
    program: str,
    options: str = "",
    timeout_s: float = 60.0,
    limit: int = 8,
) -> NodesConcurrencySet:
    """Run the perf test on every group of a schedule; one journal record per node and group.

    `program` is the perf test each node runs (cluster_runner's run_cluster_perf; the lab's
    is zcl-perftest), called with --test, --node, --role and --peers, then `options`; it
    prints its result as JSON."""
    groups = SCHEDULES[schedule](context.nodes)

    async def test_group(group: Group) -> None:
        await asyncio.gather(*(test_node(group, node) for node in group))

    async def test_node(group: Group, node: str) -> None:
        record: dict[str, Any] = {"schedule": schedule, "group": list(group), "node": node}
        command = perftest_command(program, schedule, node, group, options)
        try:
            result = await context.executor(node).run(command, timeout_s=timeout_s)
            record.update(exit_status=result.exit_status, transport=result.transport)
            record["duration_s"] = round(result.duration_s, 4)
            record["result"] = json.loads(result.stdout) if result.stdout.strip() else None
            record["passed"] = result.ok and bool(record["result"] and record["result"]["passed"])
            if not result.ok:
                stderr = result.text("stderr").strip()[-500:]
                record["error"] = stderr or f"exit status {result.exit_status}"
        except ExecutorError as exc:
            record.update(passed=False, error=f"{type(exc).__name__}: {exc}")
        except ValueError as exc:  # the test printed something that is not its JSON result
            record.update(passed=False, error=f"unreadable result: {exc}")
        await context.journal().write(record)

    async with nodes_concurrency_set(limit) as runner:
        for group in groups:
            await runner.submit(group, lambda group=group: test_group(group))  # type: ignore[misc]
    return runner
