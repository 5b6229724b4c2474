"""Test configuration for the whole repository (tests/ and the brief's test_coordination.py in
step 03): every test must leave no child process and no stray thread behind, and the shared
fixtures (keys, a real sshd, a folder the SSH login user can write to)."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import child_pids, skip_here_fail_on_ci
from zcl import keys
from zcl_lab.openssh_server import OpenSshServer, sshd_missing_reason


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


@pytest.fixture
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CurveZMQ keys for one node ("node1") and one controller ("runner"), trusting each other;
    beside the test's tmp_path, not in it, so an agent may serve tmp_path as a file root (an
    agent refuses a root that holds its keys)."""
    folder = tmp_path_factory.mktemp("keys")
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
