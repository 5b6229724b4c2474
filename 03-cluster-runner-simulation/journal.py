"""The journal as cluster_runner keeps it: one JSON object per line, one line per result.

`FileJournalWriter` is the baseline (cluster_runner's AsyncPerfTestJournalFileWriter): an
asyncio writer that appends each record from a worker thread so the event loop never waits on
the disk. The ZeroMQ journal (zmq_journal.py) writes the very same format, so the two files can
be compared line by line.

Every record carries a `record_id`, given here when the caller did not: it is what lets the
ZeroMQ collector keep exactly one copy of a record that was sent twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cluster_sim.protocols import AsyncJournalWriterProtocol


def with_record_id(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"record_id": uuid.uuid4().hex, **record}


def encode_line(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete record in a journal file (a torn last line is not a record)."""
    return list(iter_records(path.read_bytes()))


def iter_records(data: bytes) -> Iterator[dict[str, Any]]:
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.splitlines():
        if line.strip():
            yield json.loads(line)


class FileJournalWriter:
    """Appends records to a local JSON-lines file; `durable=True` fsyncs each one."""

    def __init__(self, path: Path, durable: bool = False) -> None:
        self.path, self.durable = path, durable
        self.file = path.open("ab")

    def _append(self, line: bytes) -> None:
        self.file.write(line)
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())

    async def write(self, record: Mapping[str, Any]) -> None:
        await asyncio.to_thread(self._append, encode_line(with_record_id(record)))

    async def close(self) -> None:
        self.file.close()


_conforms: type[AsyncJournalWriterProtocol] = FileJournalWriter
