"""What both operational contexts share: the nodes, an executor per node, cached system
configurations, the journal, and closing all of it, whatever way the run ends.

`build_ssh_context` (ssh_context.py) and `build_zmq_context` (zmq_operational_context.py) differ
only in how they make a node's executor; each is an async context manager, and owns what it is
given: on the way out it closes every executor and the journal passed in (a later write raises
JournalError saying so):

    async with build_zmq_context(descriptor, filter_fn, journal) as ctx:
        result = await ctx.executor("node3").run("nvidia-smi -L")
        await ctx.journal().write({...})
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Unpack

from zcl.errors import ExecutorError, InvalidRequestError, UnknownNodeError
from zcl.protocols import (
    AsyncJournalWriterProtocol,
    ClusterDescriptor,
    CommandResult,
    NodeDescriptor,
    NodeExecutorProtocol,
    OperationalContextProtocol,
    SystemConfig,
)
from zcl.retry import RetryPolicy
from zcl.run_options import RunKeywords

NodeFilter = Callable[[NodeDescriptor], bool]
GroupResults = dict[str, CommandResult | ExecutorError]  # node id -> its result or its error
ExecutorFactory = Callable[[NodeDescriptor], NodeExecutorProtocol]


class OperationalContext:
    def __init__(
        self,
        descriptor: ClusterDescriptor,
        filter_fn: NodeFilter | None,
        journal: AsyncJournalWriterProtocol,
        make_executor: ExecutorFactory,
    ) -> None:
        self._nodes = [n for n in descriptor.nodes if filter_fn is None or filter_fn(n)]
        self._by_id = {node.node_id: node for node in self._nodes}
        self._journal, self._make_executor = journal, make_executor
        self._executors: dict[str, NodeExecutorProtocol] = {}
        self._configs: dict[str, asyncio.Task[SystemConfig]] = {}

    @property
    def nodes(self) -> Sequence[NodeDescriptor]:
        return self._nodes

    def journal(self) -> AsyncJournalWriterProtocol:
        return self._journal

    def executor(self, node_id: str) -> NodeExecutorProtocol:
        if node_id not in self._by_id:
            raise UnknownNodeError(
                node_id, "not in this run (filtered out, or not in the descriptor)"
            )
        if node_id not in self._executors:
            self._executors[node_id] = self._make_executor(self._by_id[node_id])
        return self._executors[node_id]

    async def system_config(self, node_id: str) -> SystemConfig:
        """Asked of the node once; every later caller, also a concurrent one, shares the answer."""
        task = self._configs.get(node_id)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self.executor(node_id).system_config())
            self._configs[node_id] = task
        return await asyncio.shield(task)

    async def run_group(
        self,
        node_ids: Sequence[str],
        command: str,
        *,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
        **options: Unpack[RunKeywords],
    ) -> GroupResults:
        """`command` on every node of the group: each node's CommandResult, or the
        ExecutorError it failed with, in the order asked; at most `max_concurrency` at once.
        One node failing never stops the others."""
        executors: dict[str, NodeExecutorProtocol] = {}
        unusable: GroupResults = {}
        for node_id in node_ids:
            try:
                executors[node_id] = self.executor(node_id)
            except ExecutorError as exc:  # this node's entry, not the group's end
                unusable[node_id] = exc
        ran = await run_on_group(
            executors, command, max_concurrency=max_concurrency, retry=retry, **options
        )
        return {
            node_id: ran[node_id] if node_id in ran else unusable[node_id] for node_id in node_ids
        }

    async def aclose(self) -> None:
        for task in self._configs.values():
            task.cancel()
        results = await asyncio.gather(
            *(executor.close() for executor in self._executors.values()), return_exceptions=True
        )
        self._executors.clear()
        await self._journal.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def run_on_group(
    executors: Mapping[str, NodeExecutorProtocol],
    command: str,
    *,
    max_concurrency: int = 64,
    retry: RetryPolicy | None = None,
    **options: Unpack[RunKeywords],
) -> GroupResults:
    """The group run for any executors (OperationalContext.run_group uses it)."""
    if max_concurrency < 1:
        raise InvalidRequestError("", "max_concurrency must be at least 1")
    slots = asyncio.Semaphore(max_concurrency)

    async def one(executor: NodeExecutorProtocol) -> CommandResult | ExecutorError:
        async with slots:
            try:
                return await executor.run(command, retry=retry, **options)
            except ExecutorError as exc:
                return exc

    outcomes = await asyncio.gather(*(one(e) for e in executors.values()))
    return dict(zip(executors, outcomes, strict=True))


@contextlib.asynccontextmanager
async def opened(context: OperationalContext) -> AsyncIterator[OperationalContext]:
    """Yield the context and close it on the way out: normally, on error or on cancellation."""
    try:
        yield context
    finally:
        await context.aclose()


_conforms: type[OperationalContextProtocol] = OperationalContext
