"""The journal writers at their edges (issue 22, finding 6): every wait is bounded, the likely
cause is named, only JournalErrors come out, and both writers refuse the same records."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from cluster_patterns import processes
from tests.agents import free_port
from tests.test_zmq_journal import COLLECTOR, collector, journal_keys, writer_keys
from zcl import keys
from zcl.errors import JournalError, JournalRecordError, JournalUnavailableError
from zcl.journal import FileJournalWriter
from zcl.zmq_journal import ZmqJournalWriter

__all__ = ["journal_keys"]  # the fixture, shared with test_zmq_journal

pytestmark = pytest.mark.timeout(60)
BAD_RECORDS = [
    {"record_id": "a b"},  # a space: the collector refuses it
    {"record_id": ""},
    {"record_id": 7},
    {"record_id": "x" * 129},
    {"value": float("nan")},  # not JSON
    {"value": float("inf")},
    {"blob": "x" * (1024 * 1024)},  # over a record's size
]


@pytest.mark.asyncio
async def test_flush_has_a_default_bound(journal_keys: Path) -> None:
    """With nobody at the endpoint, flush() and close() give up by themselves."""
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    writer = ZmqJournalWriter(nowhere, writer_keys(journal_keys), wait_s=0.5)
    await writer.write({"n": 1})
    with pytest.raises(JournalUnavailableError, match=r"not acknowledged within 0\.5 s"):
        await asyncio.wait_for(writer.flush(), 20)  # no timeout given: the default holds
    with pytest.raises(JournalUnavailableError):
        await asyncio.wait_for(writer.close(), 20)


@pytest.mark.asyncio
async def test_write_gives_up_when_the_collector_never_acknowledges(journal_keys: Path) -> None:
    """The window fills (the collector is down) and the next write() raises, after its bound,
    instead of blocking for ever; the records already taken are still the writer's."""
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    writer = ZmqJournalWriter(nowhere, writer_keys(journal_keys), max_unacked=3, wait_s=0.3)
    for n in range(3):
        await writer.write({"n": n})
    with pytest.raises(JournalUnavailableError, match="cannot connect"):
        await asyncio.wait_for(writer.write({"n": 3}), 20)
    assert len(writer.unacked) == 3
    with pytest.raises(JournalUnavailableError):
        await writer.close(timeout_s=0.2)


@pytest.mark.asyncio
async def test_wrong_keys_are_named_in_the_log_and_the_error(
    journal_keys: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer whose key the collector does not list waited for ever without a word."""
    keys.add_controller(journal_keys, "stranger")
    keys.revoke_controller(journal_keys, "stranger")  # pins the collector, is not trusted
    stranger = keys.load_controller_keys(keys.controller_dir(journal_keys, "stranger"))
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind):
        writer = ZmqJournalWriter(bind, stranger, wait_s=2)
        with caplog.at_level(logging.WARNING):
            await writer.write({"n": 1})
            with pytest.raises(JournalUnavailableError, match="refused our key"):
                await writer.close()
    assert any("refused our key" in r.getMessage() for r in caplog.records)


def test_a_writer_is_made_outside_a_running_loop(journal_keys: Path) -> None:
    """Built in synchronous set-up code, used later inside the loop."""
    writer = ZmqJournalWriter(f"tcp://127.0.0.1:{free_port()}", writer_keys(journal_keys))

    async def use() -> None:
        await writer.write({"n": 1})
        with pytest.raises(JournalUnavailableError):
            await writer.close(timeout_s=0.2)

    asyncio.run(use())


def test_a_collector_key_missing_from_known_hosts_is_a_journal_error(
    journal_keys: Path,
) -> None:
    """Raised before any socket exists (a socket left behind would hold the context)."""
    controller = writer_keys(journal_keys)
    with pytest.raises(JournalError, match="no pinned key for 'elsewhere'"):
        ZmqJournalWriter("tcp://127.0.0.1:1", controller, collector_id="elsewhere")


@pytest.mark.asyncio
@pytest.mark.parametrize("record", BAD_RECORDS, ids=range(len(BAD_RECORDS)))
async def test_both_writers_refuse_the_same_records_at_write(
    record: dict[str, object], journal_keys: Path, tmp_path: Path
) -> None:
    """The file journal accepted record ids the collector refuses: two journals that disagree
    on the same input. One check, run at write(), before anything is kept or sent."""
    file_writer = FileJournalWriter(tmp_path / "journal.jsonl")
    zmq_writer = ZmqJournalWriter(f"tcp://127.0.0.1:{free_port()}", writer_keys(journal_keys))
    try:
        for writer in (file_writer, zmq_writer):
            with pytest.raises(JournalRecordError):
                await writer.write(record)
        assert not zmq_writer.unacked
        assert (tmp_path / "journal.jsonl").read_bytes() == b""
    finally:
        await file_writer.close()
        await zmq_writer.close(timeout_s=0.2)
