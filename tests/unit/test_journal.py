"""The file journal: JSON lines, a record id on each, torn last lines ignored."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

from zcl.journal import FileJournalWriter, read_journal
from zcl.protocols import AsyncJournalWriterProtocol
from zcl.zmq_journal import ZmqJournalWriter


@pytest.mark.asyncio
@pytest.mark.parametrize("durable", [False, True])
async def test_records_are_json_lines_with_ids(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "journal.jsonl"
    writer = FileJournalWriter(path, durable=durable)
    await writer.write({"node": "n1", "passed": True})
    await writer.write({"record_id": "mine", "node": "n2"})
    await writer.close()
    lines = path.read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert len(first["record_id"]) == 32 and first["node"] == "n1"
    assert second == {"record_id": "mine", "node": "n2"}


def test_a_torn_last_line_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"record_id":"a"}\n{"record_id":"b"}\n{"record_id":"c","hal')
    assert [r["record_id"] for r in read_journal(path)] == ["a", "b"]


@pytest.mark.asyncio
async def test_flush_is_the_call_that_makes_records_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract said `write` returns once the record is safe; the file writer without
    `durable` never fsynced at all. Now `flush` is the promise, for every writer."""
    synced: list[int] = []
    real_fsync = os.fsync

    def noting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", noting_fsync)
    journal = FileJournalWriter(tmp_path / "j.jsonl")  # not durable: write does not sync
    await journal.write({"record_id": "a", "n": 1})
    assert synced == []
    await journal.flush()
    assert synced == [journal.file.fileno()]
    await journal.close()
    assert [r["record_id"] for r in read_journal(tmp_path / "j.jsonl")] == ["a"]


def test_every_writer_has_the_flush_the_contract_promises() -> None:
    for writer in (FileJournalWriter, ZmqJournalWriter):
        assert inspect.iscoroutinefunction(writer.flush), writer
    assert "flush" in AsyncJournalWriterProtocol.__dict__
    assert "durable" in (AsyncJournalWriterProtocol.__doc__ or "")
