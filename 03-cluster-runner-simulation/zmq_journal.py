"""Step 03, ZMQ Journal: cluster_runner's `AsyncJournalWriterProtocol` over ZeroMQ.

The code is the product's, in the zcl package (zcl/src/zcl/zmq_journal.py). Many writers on
many hosts send results to one collector, which keeps each exactly once:

    writer (DEALER) --[VERSION, record_id, json line]--> collector (ROUTER) --> journal.jsonl
                    <--[VERSION, ACK, record_id, ...]--       after fsync

Read it in this order:

1. `ZmqJournalWriter`: `write(record)` keeps the record until the collector acknowledges it
   and sends it again after a lost connection or a collector restart; `write()` waits while
   too many are unacknowledged, so a slow collector slows its writers instead of being
   flooded. A record the collector refuses for good raises `JournalRecordError`; `flush()`
   and `close()` raise `JournalUnavailableError` when what was written was not acknowledged
   in time (a collector down, or refusing our key).
2. The collector (`zcl-collector`, zcl/src/zcl/journal_collector.py): appends what has
   arrived in one write, fsyncs, and only then acknowledges, so an acknowledged record is on
   disk; it rereads the file at start-up to recognise resends, drops a torn last line (never
   acknowledged) and sets aside complete lines that are not records. Their frames are
   zcl/src/zcl/journal_wire.py.
3. `FileJournalWriter` (zcl/src/zcl/journal.py) writes the same JSON-lines format to a local
   file: the journal of a single runner, and the format `zcl-journal compare` reads.

tests/test_zmq_journal.py kills collectors and writers with real signals and counts records.
"""

from __future__ import annotations

from zcl.errors import JournalError, JournalRecordError, JournalUnavailableError
from zcl.journal import FileJournalWriter, read_journal
from zcl.protocols import AsyncJournalWriterProtocol
from zcl.zmq_journal import ZmqJournalWriter

__all__ = [
    "AsyncJournalWriterProtocol",
    "FileJournalWriter",
    "JournalError",
    "JournalRecordError",
    "JournalUnavailableError",
    "ZmqJournalWriter",
    "read_journal",
]
