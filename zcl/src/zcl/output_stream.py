"""A command's output as an async iterator, with backpressure, for either executor.

    async with executor.stream("make -j8", timeout_s=600) as output:
        async for stream, chunk in output:   # stream is "stdout" or "stderr"
            log.write(chunk)
    print(output.result.exit_status)

    async with executor.stream("journalctl -f", timeout_s=60) as output:
        async for stream, line in output.lines():   # a line at a time, each stream apart
            if b"error" in line: ...

A reader that falls behind slows the command instead of growing a queue: over ZeroMQ the agent
may send at most its window (zmq_node_executor.STREAM_WINDOW) ahead of what the loop has taken,
and stops reading the command's pipes until the loop catches up; over SSH the executor stops
reading the channel once `max_pending_bytes` wait here, and SSH's own flow control stops the
command's writes. Leaving the block before the end kills the command, as a cancel does; a
command that fails (timeout, transport) raises its error from the loop once the output before
the failure has been taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType

from zcl.protocols import CommandResult, Stream

DEFAULT_PENDING_BYTES = 1024 * 1024


class CommandOutput:
    def __init__(
        self,
        start: Callable[[CommandOutput], Coroutine[object, object, CommandResult]],
        *,
        max_pending_bytes: int = DEFAULT_PENDING_BYTES,
    ) -> None:
        self._start = start
        self.max_pending_bytes = max_pending_bytes
        self.on_consumed: Callable[[int], None] | None = None  # set by the executor, if it paces
        self._chunks: deque[tuple[Stream, bytes]] = deque()
        self._pending = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[CommandResult] | None = None
        self._result: CommandResult | None = None

    @property
    def result(self) -> CommandResult:
        """The command's result, once the loop has ended."""
        if self._result is None:
            raise RuntimeError("the command has not finished: read its output to the end first")
        return self._result

    # -- the executor's side -----------------------------------------------------------------

    def feed(self, stream: Stream, chunk: bytes) -> None:
        """Add a chunk now (the executor paces the sender itself)."""
        self._chunks.append((stream, chunk))
        self._pending += len(chunk)
        self._changed.set()

    async def put(self, stream: Stream, chunk: bytes) -> None:
        """Add a chunk, waiting while too much is unread (the executor stops reading)."""
        while self._pending >= self.max_pending_bytes:
            self._changed.clear()
            await self._changed.wait()
        self.feed(stream, chunk)

    # -- the reader's side -------------------------------------------------------------------

    async def __aenter__(self) -> CommandOutput:
        self._task = asyncio.create_task(self._start(self))
        self._task.add_done_callback(lambda _: self._changed.set())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task = self._task
        if task is None:
            return
        if not task.done():  # left early: the command is killed, as on a cancel
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return
        if kind is None and not task.cancelled():
            self._result = task.result()  # raises the command's error if nobody read it

    def __aiter__(self) -> CommandOutput:
        return self

    async def lines(self) -> AsyncIterator[tuple[Stream, bytes]]:
        """The output a line at a time, stdout's and stderr's apart: each line keeps its b"\\n",
        and what a stream wrote after its last newline comes at the end. A line is held only
        until its newline arrives, and never beyond the command's output cap."""
        partial: dict[Stream, bytes] = {"stdout": b"", "stderr": b""}
        async for stream, chunk in self:
            *complete, partial[stream] = (partial[stream] + chunk).split(b"\n")
            for line in complete:
                yield stream, line + b"\n"
        for stream, rest in partial.items():
            if rest:
                yield stream, rest

    async def __anext__(self) -> tuple[Stream, bytes]:
        if self._task is None:
            raise RuntimeError("use `async with executor.stream(...)` before iterating")
        while not self._chunks:
            if self._task.done():
                self._result = self._task.result()  # the command's error, if it failed
                raise StopAsyncIteration
            self._changed.clear()
            await self._changed.wait()
        stream, chunk = self._chunks.popleft()
        self._pending -= len(chunk)
        self._changed.set()  # room for a waiting put
        if self.on_consumed is not None:
            self.on_consumed(len(chunk))
        return stream, chunk
