"""The 01 tour: run every lesson's demo in order, each in its own process, one verdict a line.

Each demo checks the behaviour it teaches and exits 1 when it did not happen, so the tour is
also a quick health check of the machine's ZeroMQ. Use --verbose to see each demo's output.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

from zmq_basics.lesson import LessonParser

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


def run_lesson(name: str, verbose: bool) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"zmq_basics.{name}", "demo"],
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"FAIL {name}: no verdict within {DEMO_TIMEOUT_S}s"
    if verbose:
        print(done.stdout, end="")
    lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
    return done.returncode == 0, lines[-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = LessonParser(description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="show each demo's full output")
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
    for name in chosen:
        started = time.monotonic()
        ok, last_line = run_lesson(name, args.verbose)
        failures += not ok
        print(f"[{time.monotonic() - started:5.1f}s] {last_line}", flush=True)
    print(f"01 tour: {len(chosen) - failures} of {len(chosen)} lessons passed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
