"""One line in the Docker cluster's shared event log, written as JSON, whatever the names hold.

The monitor writes the cluster's own events to docker/.build/events/events.jsonl, and the
cluster driver (zcl_lab.cluster_driver) adds its faults to the same file with record(),
so that both share one timeline. From a shell, for a fault injected by hand:

    python -m zcl_lab.event_log --events events.jsonl fault.start.fail worker1 --ts 1795.2

Each record is one write to a file opened for appending, so lines from the monitor and from
here never interleave.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from zcl import cli

SOURCE = "simulate-cluster"


def record(events: Path, event: str, target: str, ts: float | None = None) -> dict[str, object]:
    line = {"ts": time.time() if ts is None else ts, "source": SOURCE, "event": event}
    line["target"] = target
    events.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    return line


def _cmd_record(args: argparse.Namespace) -> int:
    record(args.events, args.event, args.target, args.ts)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "event_log")
    parser.add_argument("--events", type=Path, required=True, help="the event log (JSON lines)")
    parser.add_argument("event", help="what happened, e.g. fault.start.partition")
    parser.add_argument("target", help="to whom, e.g. worker2")
    parser.add_argument("--ts", type=float, help="when (Unix time; default now)")
    parser.set_defaults(func=_cmd_record)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
