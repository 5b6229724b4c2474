"""Every daemon fails fast and loudly on a start-up error: one line on stderr, exit 1, nothing
left open, so systemd's Restart= fires and an operator reads why. (Issue 22, finding 1: an agent
whose port was taken hung in ctx.term() without a word.)"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zcl import keys

DAEMONS = {
    "agent": ["-m", "zcl.agent.node_agent"],
    "collector": ["-m", "zcl.journal_collector"],
    "coordinator": ["-m", "cluster_patterns.coordinator"],
}
START_UP_S = 15  # a daemon that has not exited by then hangs


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A TCP port on loopback that something else is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def start(daemon: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, *DAEMONS[daemon], *args],
            capture_output=True,
            text=True,
            timeout=START_UP_S,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as hung:  # run() has killed it by now
        raise AssertionError(f"{daemon} hung on a start-up error: {hung.stdout!r}") from None


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], errors[0]


def bind_args(daemon: str, port: int) -> list[str]:
    if daemon == "agent":
        return ["--insecure", "--bind", f"tcp://127.0.0.1:{port}"]
    if daemon == "collector":
        return ["--insecure", "--bind", f"tcp://127.0.0.1:{port}"]
    return ["--insecure", "--endpoint", f"tcp://127.0.0.1:{port}", "--events", "tcp://127.0.0.1:*"]


def secure_args(daemon: str, keydir: Path, port: int) -> list[str]:
    """The daemon with CurveZMQ on, as deployed: the ZAP handler starts before the bind."""
    folder = str(keys.node_dir(keydir, "node1"))
    if daemon == "coordinator":
        endpoints = ["--endpoint", f"tcp://127.0.0.1:{port}", "--events", "tcp://127.0.0.1:*"]
        return ["--keys", folder, *endpoints]
    return ["--keys", folder, "--bind", f"tcp://127.0.0.1:{port}"]


def extra(daemon: str, tmp_path: Path) -> list[str]:
    if daemon == "collector":
        return ["--path", str(tmp_path / "journal.jsonl")]
    return []


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_a_port_already_taken_is_one_line_and_exit_1(
    daemon: str, taken_port: int, tmp_path: Path
) -> None:
    done = start(daemon, *bind_args(daemon, taken_port), *extra(daemon, tmp_path), cwd=tmp_path)
    assert_one_line_error(done, "cannot bind", str(taken_port), "in use")


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_a_port_already_taken_with_curvezmq_on_is_one_line_and_exit_1(
    daemon: str, taken_port: int, keydir: Path, tmp_path: Path
) -> None:
    args = [*secure_args(daemon, keydir, taken_port), *extra(daemon, tmp_path)]
    assert_one_line_error(start(daemon, *args, cwd=tmp_path), "cannot bind", str(taken_port))


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_an_endpoint_that_cannot_be_bound_is_one_line_and_exit_1(
    daemon: str, tmp_path: Path
) -> None:
    args = [a.replace("127.0.0.1:0", "no-such-host.invalid:*") for a in bind_args(daemon, 0)]
    done = start(daemon, *args, *extra(daemon, tmp_path), cwd=tmp_path)
    assert_one_line_error(done, "cannot bind", "no-such-host.invalid")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--ready-file", "/nonexistent/agent.ready"], ["--ready-file", "/nonexistent"]),
        (["--drain-timeout", "-1"], ["--drain-timeout"]),
        (["--controller-timeout", "0"], ["--controller-timeout"]),
        (["--warm-shells", "-3"], ["--warm-shells"]),
    ],
)
def test_the_agent_refuses_bad_settings_before_it_serves(
    args: list[str], words: list[str], tmp_path: Path
) -> None:
    base = ["--insecure", "--bind", "tcp://127.0.0.1:*"]
    done = start("agent", *base, *args, cwd=tmp_path)
    assert done.returncode in (1, 2), done
    assert "Traceback" not in done.stderr + done.stdout
    assert "ready on" not in done.stdout  # refused before serving, not after
    assert all(word in done.stderr for word in words), done.stderr


def test_an_agent_key_folder_without_its_secret_is_one_line(keydir: Path, tmp_path: Path) -> None:
    folder = keys.node_dir(keydir, "node1")
    (folder / "host.key_secret").unlink()
    base = ["--keys", str(folder), "--bind", "tcp://127.0.0.1:*"]
    assert_one_line_error(start("agent", *base, cwd=tmp_path), str(folder))
