"""The memory-bound tier (issue 23, part 3): a daemon under its worst peer, or its worst
start, holds no more than a stated ceiling, measured as its peak RSS (VmHWM) against the same
daemon's at its lightest. Memory is not time: these figures do not move with the machine's
load, so they are assertions here; the closing note gives the measured values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zmq

from cluster_patterns import processes
from cluster_sim.journal import MAX_RECORD_BYTES, read_journal
from tests.test_journal_hardening import answer, journal_keys, link, record
from tests.test_zmq_journal import COLLECTOR, collector

__all__ = ["journal_keys", "link"]  # fixtures, used by name below
pytestmark = pytest.mark.timeout(300)
MiB = 1024 * 1024
JOURNAL_MIB = 300
START_UP_CEILING = 64 * MiB  # over the same collector's on an empty journal


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def big_journal(path: Path, mib: int) -> int:
    """`mib` records of nearly 1 MiB each, and two lines an older collector let in (so that
    start-up also sets lines aside, rewriting the journal). The records written."""
    filler = "x" * (MAX_RECORD_BYTES - 100)
    with path.open("wb") as out:
        for number in range(mib):
            out.write(json.dumps({"record_id": f"r{number}", "pad": filler}).encode() + b"\n")
            if number in (1, mib // 2):
                out.write(b'{"record_id":"old","x":NaN}\n')
    return mib


def started_peak(
    journal_keys: Path, path: Path, link: tuple[zmq.Socket[bytes], str], record_id: str
) -> int:
    """The collector's peak RSS once it has started on `path` and acked one record."""
    sock, bind = link
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind) as child:
        reply = answer(sock, record_id.encode(), record(record_id))
        assert reply[1] == b"ack", reply
        return peak_rss(child.process.pid)


def test_collector_start_up_memory_is_flat_in_the_journal_size(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    """A 300 MiB journal peaked at 930 MiB (28 MiB empty): the file, its lines and their
    copies at once. Read a line at a time, it costs what one line does."""
    empty = started_peak(journal_keys, tmp_path / "empty.jsonl", link, "first")
    path = tmp_path / "big.jsonl"
    written = big_journal(path, JOURNAL_MIB)
    big = started_peak(journal_keys, path, link, "last")
    print(f"collector peak RSS: empty journal {empty / MiB:.0f} MiB, "
          f"{JOURNAL_MIB} MiB journal {big / MiB:.0f} MiB")  # fmt: skip
    assert big - empty <= START_UP_CEILING, (empty, big)
    records = read_journal(path)
    assert len(records) == written + 1 and records[-1]["record_id"] == "last"
    assert (tmp_path / "big.jsonl.quarantine").read_bytes().count(b"\n") == 2
