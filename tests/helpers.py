"""Helpers the tests share: child processes, running modules as a user would, and the rule that
a tier needing a real part skips here but fails on CI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def child_pids() -> set[int]:
    """Live (not zombie) processes whose parent is this test process."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z":
            found.add(int(entry.name))
    return found


def python_module(
    module: str, *args: str, timeout_s: float = 30, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS...` as a user would run it, output captured, never hanging."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=cwd,
        check=False,
    )


def skip_here_fail_on_ci(reason: str | None, what: str) -> None:
    """A tier that needs a real part (sshd, Docker) skips where it is missing, except on CI
    (or with ZCL_REQUIRE_ALL=1), where a missing part must fail the run, not hide it."""
    if reason is None:
        return
    if os.environ.get("CI") or os.environ.get("ZCL_REQUIRE_ALL"):
        pytest.fail(f"{what} must run here: {reason}")
    pytest.skip(reason)


def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Ask `condition` until it holds, failing with `what` after `timeout_s`: for states that
    have no event to wait on (an agent's counters, a file gone). The pause only spaces the
    questions; the deadline decides."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)  # spaces the questions; the deadline above decides
