"""The coordinator's verdicts on a node, read from the cluster's event log as the monitor
appends them: how long after a fault (a moment the driver took itself, in this process) the
coordinator said a node was dead, back, or given a task again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from zcl.errors import CliError

WAIT_S = 60.0


def follow(log: TextIO, deadline: float) -> Iterator[dict[str, Any]]:
    """The log's events as they are appended, until the deadline; torn last lines wait."""
    pending = ""
    while time.monotonic() < deadline:
        chunk = log.readline()
        if not chunk:
            time.sleep(0.02)  # a file has no "wait for more": look again shortly
            continue
        pending += chunk
        if pending.endswith("\n"):
            line, pending = pending, ""
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line of another writer's, not an event
            if isinstance(event, dict):
                yield event


def seconds_until(
    events: Path,
    topic: str,
    worker: str,
    since: float,
    *,
    offset: int = 0,
    timeout_s: float = WAIT_S,
) -> float:
    """Seconds from `since` (Unix time) to the first `topic` about `worker` at or after it,
    reading the log from byte `offset` on; CliError if none comes within the timeout."""
    deadline = time.monotonic() + timeout_s
    try:
        log = events.open()
    except OSError as exc:
        raise CliError(f"cannot read the event log: {exc}") from None
    with log:
        log.seek(offset)
        for event in follow(log, deadline):
            try:
                ts = float(event.get("ts", 0))
            except (TypeError, ValueError):
                continue
            if event.get("topic") == topic and event.get("worker") == worker and ts >= since:
                return round(ts - since, 3)
    raise CliError(f"the coordinator never reported {topic} for {worker} within {timeout_s:g} s")
