"""Two small rules with no socket: a stream's output cut into lines, each stream apart and
across chunk boundaries; and the open-files limit, which is the host process's and is raised
only when the caller asks."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Iterator

import pytest
import zmq

from zcl.output_stream import CommandOutput
from zcl.protocols import CommandResult, Stream
from zcl.zmq_operational_context import FILES_PER_NODE, room_for

pytestmark = pytest.mark.timeout(10)


def lines_of(chunks: list[tuple[Stream, bytes]]) -> list[tuple[Stream, bytes]]:
    async def command(output: CommandOutput) -> CommandResult:
        for stream, chunk in chunks:
            output.feed(stream, chunk)
        return CommandResult("n", "c", 0, b"", b"", 0.0)

    async def read() -> list[tuple[Stream, bytes]]:
        async with CommandOutput(command) as output:
            return [line async for line in output.lines()]

    return asyncio.run(read())


def test_lines_are_cut_at_newlines_across_chunks_and_streams() -> None:
    chunks: list[tuple[Stream, bytes]] = [
        ("stdout", b"one\ntw"),
        ("stderr", b"e1\ne"),
        ("stdout", b"o\n\nthr"),
        ("stderr", b"2\n"),
        ("stdout", b"ee"),
    ]
    assert lines_of(chunks) == [
        ("stdout", b"one\n"),
        ("stderr", b"e1\n"),
        ("stdout", b"two\n"),
        ("stdout", b"\n"),
        ("stderr", b"e2\n"),
        ("stdout", b"three"),  # no newline at the end: it comes last, as it was
    ]
    assert lines_of([]) == []


@pytest.fixture
def low_open_files_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_open_files_limit_is_raised_only_when_asked(
    low_open_files_limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    hard = low_open_files_limit
    nodes = 200  # about 800 files: over the 256 set above
    with zmq.Context() as ctx, caplog.at_level(logging.WARNING):
        room_for(nodes, ctx)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 256  # the host's, untouched
        assert "raise_open_files=True" in caplog.text
        assert ctx.get(zmq.MAX_SOCKETS) >= 2 * nodes  # libzmq's socket count is ours to set
        room_for(nodes, ctx, raise_open_files=True)
        wanted = FILES_PER_NODE * nodes
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(wanted, hard)
