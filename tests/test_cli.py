"""Every program's command line: --help works, bad input is one line and a non-zero exit.

Step 01's lessons are checked in tests/test_lessons.py."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import zmq

from tests.helpers import REPO, python_module


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return python_module(module, *args)


STEP_02 = ["coordinator", "worker", "client", "monitor", "heartbeat_demo", "local_cluster"]


@pytest.mark.parametrize("name", STEP_02)
def test_step_02_help(name: str) -> None:
    done = run(f"cluster_patterns.{name}", "--help")
    assert done.returncode == 0 and "usage:" in done.stdout


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("coordinator", "--endpoint"),
        ("worker", "--coordinator"),
        ("client", "--coordinator"),
        ("monitor", "--events"),
    ],
)
def test_step_02_malformed_endpoint_is_one_line(name: str, option: str) -> None:
    done = run(f"cluster_patterns.{name}", option, "nonsense")
    assert (
        done.returncode == 2 and done.stderr.count("\n") == 1 and "invalid endpoint" in done.stderr
    )


def test_coordinator_port_in_use_is_one_line() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as holder:
        holder.linger = 0
        holder.bind("tcp://127.0.0.1:*")
        taken = holder.getsockopt_string(zmq.LAST_ENDPOINT)
        done = run(
            "cluster_patterns.coordinator",
            *("--endpoint", taken, "--events", "tcp://127.0.0.1:*", "--insecure"),
        )
    assert done.returncode == 1
    assert done.stderr == f"zcl-coordinator: error: cannot bind {taken}: Address already in use\n"


CONSOLE_SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(CONSOLE_SCRIPTS))
def test_console_scripts_answer_help_under_their_own_name(script: str) -> None:
    """Each zcl-* command is installed beside the interpreter and names itself in its usage."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / script), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}")
