"""The 01 tour: run every lesson's demo in order, each in its own process, one verdict a line.

Each demo checks the behaviour it teaches and exits 1 when it did not happen, so the tour is
also a quick health check of the machine's ZeroMQ. Use --verbose to see each demo's output,
and --json FILE to save what the demos measured (`make bench` writes results/bench-01.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zmq_basics.lesson import FIGURES_MARK, LessonParser

LESSONS = [
    "req_rep",
    "push_pull",
    "pub_sub",
    "router_dealer",
    "framing",
    "high_water_marks",
    "bind_connect",
    "socket_types",
    "sync_vs_async",
]
DEMO_TIMEOUT_S = 120


def run_lesson(name: str, verbose: bool) -> tuple[bool, str, dict[str, Any] | None]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"zmq_basics.{name}", "demo"],
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"FAIL {name}: no verdict within {DEMO_TIMEOUT_S}s", None
    if verbose:
        print(done.stdout, end="")
    lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
    measured = [line for line in lines if line.startswith(FIGURES_MARK)]
    figures = json.loads(measured[-1].removeprefix(FIGURES_MARK)) if measured else None
    return done.returncode == 0, lines[-1], figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = LessonParser(description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="show each demo's full output")
    parser.add_argument("--json", type=Path, help="save what the demos measured to this file")
    parser.add_argument(
        "lessons",
        nargs="*",
        metavar="LESSON",
        help=f"run only these (default: all of {', '.join(LESSONS)})",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.lessons) - set(LESSONS))
    if unknown:
        parser.error(f"unknown lesson {', '.join(unknown)}; choose from {', '.join(LESSONS)}")
    chosen = args.lessons or LESSONS
    failures = 0
    measured: dict[str, Any] = {}
    for name in chosen:
        started = time.monotonic()
        ok, last_line, figures = run_lesson(name, args.verbose)
        failures += not ok
        if figures is not None:
            measured[name] = figures
        print(f"[{time.monotonic() - started:5.1f}s] {last_line}", flush=True)
    print(f"01 tour: {len(chosen) - failures} of {len(chosen)} lessons passed")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
        print(f"saved {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
