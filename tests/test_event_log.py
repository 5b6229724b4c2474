"""The Docker cluster's fault events, as JSON whatever the names hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zcl_lab.event_log import record


def test_a_record_is_one_json_line_that_keeps_quotes_and_backslashes(tmp_path: Path) -> None:
    events = tmp_path / "events" / "events.jsonl"
    record(events, "fault.start.fail", 'node "x"\\y', ts=12.5)
    record(events, "cluster.started", "3 nodes")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines[0] == {
        "ts": 12.5,
        "source": "simulate-cluster",
        "event": "fault.start.fail",
        "target": 'node "x"\\y',
    }
    assert lines[1]["target"] == "3 nodes" and lines[1]["ts"] > 12.5


def test_the_command_line_appends_the_same_record(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "zcl_lab.event_log", "--events", str(events),
         "fault.end.partition", "worker2", "--ts", "99"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(events.read_text()) == {
        "ts": 99.0,
        "source": "simulate-cluster",
        "event": "fault.end.partition",
        "target": "worker2",
    }
