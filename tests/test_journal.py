"""The file journal: JSON lines, a record id on each, torn last lines ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster_sim.journal import FileJournalWriter, read_journal


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
