"""`python -m zcl.journal compare`: the A/B check of a migration, on journal files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import python_module
from zcl.journal import comparable, differences


def journal(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def compare(*args: str) -> subprocess.CompletedProcess[str]:
    return python_module("zcl.journal", "compare", *args)


RECORD = {"schedule": "all_servers", "node": "node01", "gbps": 100}


def test_runs_that_differ_only_in_timings_ids_and_transport_are_equal(tmp_path: Path) -> None:
    ssh = journal(
        tmp_path / "ssh.jsonl",
        {**RECORD, "record_id": "a", "duration_s": 1.5, "transport": "ssh"},
        {**RECORD, "node": "node02", "record_id": "b", "duration_s": 1.1, "transport": "ssh"},
    )
    zmq = journal(
        tmp_path / "zmq.jsonl",
        {**RECORD, "node": "node02", "record_id": "x", "duration_s": 0.9, "transport": "zmq"},
        {**RECORD, "record_id": "y", "duration_s": 1.0, "transport": "zmq"},
    )
    done = compare(str(ssh), str(zmq))
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("EQUAL: 2 records")


def test_a_missing_a_changed_or_a_doubled_record_is_reported(tmp_path: Path) -> None:
    ssh = journal(tmp_path / "ssh.jsonl", RECORD, {**RECORD, "node": "node02"})
    zmq = journal(tmp_path / "zmq.jsonl", RECORD, RECORD, {**RECORD, "node": "node02", "gbps": 1})
    done = compare(str(ssh), str(zmq))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert sum(line.startswith(f"only in {zmq}:") for line in lines) == 2  # doubled and changed
    assert sum(line.startswith(f"only in {ssh}:") for line in lines) == 1
    assert "DIFFER: 1 record(s) only in" in done.stdout


def test_an_empty_first_journal_is_not_equal_to_an_empty_second(tmp_path: Path) -> None:
    empty = journal(tmp_path / "empty.jsonl")
    done = compare(str(empty), str(empty))
    assert done.returncode == 1 and "holds no record" in done.stdout


def test_an_unreadable_journal_is_one_clear_line(tmp_path: Path) -> None:
    done = compare(str(tmp_path / "absent.jsonl"), str(tmp_path / "absent.jsonl"))
    assert done.returncode == 1
    assert "cannot read the journal" in done.stderr and done.stderr.count("\n") == 1


def test_differences_count_repeats() -> None:
    first = comparable([RECORD, RECORD])
    second = comparable([RECORD])
    assert differences(first, second) == (comparable([RECORD]), [])


def test_ignore_adds_to_the_default_fields_and_files_may_follow_it(tmp_path: Path) -> None:
    """--ignore used to replace the defaults (so duration_s and record_id differed again) and,
    taking any number of values, swallowed the file names placed after it."""
    first = journal(
        tmp_path / "a.jsonl", {**RECORD, "record_id": "a", "duration_s": 1, "host": "x"}
    )
    second = journal(
        tmp_path / "b.jsonl", {**RECORD, "record_id": "b", "duration_s": 2, "host": "y"}
    )
    done = compare("--ignore", "host", str(first), str(second))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "host" in done.stdout and "duration_s" in done.stdout
    replaced = compare("--only-ignore", "host", str(first), str(second))
    assert replaced.returncode == 1 and "DIFFER" in replaced.stdout  # record_id now counts
