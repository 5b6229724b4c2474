"""The simulated perf test: stable figures, failure on request, and the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zcl_lab import perftest


def test_figures_depend_only_on_who_takes_part(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--node",
        "n1",
        "--role",
        "server",
        "--peers",
        "n2,n3",
        "--duration",
        "0",
        "--jitter",
        "0",
    ]
    assert perftest.main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert perftest.main([*args[:5], "n3,n2", *args[6:]]) == 0  # the same peers, another order
    assert json.loads(capsys.readouterr().out)["bandwidth_gbps"] == first["bandwidth_gbps"]
    assert first["passed"] and first["peers"] == ["n2", "n3"] and first["role"] == "server"


def test_told_to_fail_it_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert perftest.main(["--node", "n1", "--duration", "0", "--jitter", "0", "--fail"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False


def test_told_to_hang_it_hangs_until_killed() -> None:
    command = [sys.executable, "-m", "zcl_lab.perftest", "--node", "n1", "--hang"]
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(command, timeout=1.0, capture_output=True, check=False)


def test_the_console_script_is_installed() -> None:
    script = shutil.which("zcl-perftest", path=str(Path(sys.executable).parent))
    assert script, "zcl-perftest is not installed next to this interpreter"
    done = subprocess.run(
        [script, "--node", "x", "--duration", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["node"] == "x"
    bad = subprocess.run(
        [script, "--role", "boss"], capture_output=True, text=True, timeout=30, check=False
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
