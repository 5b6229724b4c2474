"""The step-01 tour: every lesson's demo in reading order, in its own process, a verdict a line.

Not a lesson: it only runs them. Each demo checks the behaviour it teaches and exits 1 when it
did not happen, so the tour is also a quick health check of the machine's ZeroMQ.

  python tour.py                     every lesson, in the order of their numbers
  python tour.py 04 pub_sub          only the lessons whose file names contain these
  python tour.py --verbose           with each demo's own output
  python tour.py --json FILE         also save what the demos measured (make bench does)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_TIMEOUT_S = 120


def lessons() -> list[Path]:
    """The lessons, in reading order: their file names start with their number."""
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def takes_json(lesson: Path) -> bool:
    """Whether the lesson's demo measures something it can save (it has a --json option)."""
    done = subprocess.run(
        [sys.executable, str(lesson), "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    return "--json" in done.stdout


def run(lesson: Path, verbose: bool, save_to: Path | None) -> tuple[bool, str]:
    command = [sys.executable, str(lesson), "demo"]
    if save_to is not None:
        command += ["--json", str(save_to)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return False, f"FAIL {lesson.stem}: no verdict within {DEMO_TIMEOUT_S} s"
    if verbose:
        print(done.stdout + done.stderr, end="")
    lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
    return done.returncode == 0, lines[-1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="show each demo's full output")
    parser.add_argument("--json", type=Path, help="save what the demos measured to this file")
    parser.add_argument("only", nargs="*", metavar="LESSON", help="part of a lesson's file name")
    args = parser.parse_args()
    chosen = [p for p in lessons() if not args.only or any(o in p.name for o in args.only)]
    if not chosen:
        parser.error(f"no lesson matches {' '.join(args.only)}")
    failures = 0
    measured = {}
    with tempfile.TemporaryDirectory() as scratch:
        for lesson in chosen:
            save_to = Path(scratch, lesson.stem + ".json") if args.json else None
            if save_to is not None and not takes_json(lesson):
                save_to = None
            started = time.monotonic()
            ok, last_line = run(lesson, args.verbose, save_to)
            failures += not ok
            if save_to is not None and save_to.exists():
                measured[lesson.stem] = json.loads(save_to.read_text())
            print(f"[{time.monotonic() - started:5.1f}s] {last_line}", flush=True)
    print(f"01 tour: {len(chosen) - failures} of {len(chosen)} lessons passed")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
        print(f"saved {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
