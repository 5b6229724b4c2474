"""Shared guards: every test must leave no child process and no stray thread behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_sim import keys
from cluster_sim.openssh_server import OpenSshServer, sshd_missing_reason

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


@pytest.fixture(autouse=True)
def leaves_nothing_running() -> Iterator[None]:
    children_before = child_pids()
    threads_before = set(threading.enumerate())
    yield
    leftover_children = child_pids() - children_before
    assert not leftover_children, f"test left child processes running: {leftover_children}"
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(timeout=5)  # a thread on its way out gets a moment to finish; a stuck one fails
    leftover_threads = set(threading.enumerate()) - threads_before
    assert not leftover_threads, f"test left threads running: {leftover_threads}"


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


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    """CurveZMQ keys for one node ("node1") and one controller ("runner"), trusting each other."""
    folder = tmp_path / "keys"
    keys.generate(folder, nodes=["node1"], controllers=["runner"])
    return folder


@pytest.fixture
def sshd() -> Iterator[OpenSshServer]:
    """A real OpenSSH server on loopback; skipped where none can run, except on CI."""
    skip_here_fail_on_ci(sshd_missing_reason(), "the SSH tests")
    with OpenSshServer() as server:
        yield server


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder both the SSH login user and this process may write to."""
    folder = Path(tempfile.mkdtemp(prefix="zcl-ssh-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)
