"""The peer benchmark (lab/fleet_shell_bench.py): a small real run of zcl-run, pdsh, clush and
Ansible against the same agents and sshd, its refusal to time a run that failed on a node,
and its goals on data. The figures come from `make bench` (16, 64, 256 nodes), never a test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import skip_here_fail_on_ci
from zcl_lab import fleet_shell_bench
from zcl_lab.openssh_server import sshd_missing_reason
from zcl_tools import goals
from zcl_tools.results import BenchFleetShell

pytestmark = pytest.mark.timeout(300)


def peers_missing() -> str | None:
    reason = sshd_missing_reason()
    if reason is None and shutil.which("pdsh") is None:
        reason = "pdsh not installed: `make system` installs Debian's pdsh (as root)"
    return reason


def test_every_tool_runs_true_on_every_node_and_is_timed(tmp_path: Path) -> None:
    skip_here_fail_on_ci(peers_missing(), "the parallel-shell benchmark")
    saved = tmp_path / "shells.json"
    done = subprocess.run(
        [sys.executable, "-m", "zcl_lab.fleet_shell_bench", "--sizes", "3", "--repeats", "1",
         "--json", str(saved)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(saved.read_text())
    row = report["runs"]["3"]
    assert sorted(row) == sorted(fleet_shell_bench.TOOLS)
    for tool, run in row.items():
        assert run["failures"] == [], (tool, run)
        assert len(run["samples_s"]) == 1 and 0 < run["median_s"] < 60
    assert sorted(report["ratios"]["3"]) == sorted(fleet_shell_bench.PEERS)


def test_a_run_that_fails_on_a_node_gets_no_time() -> None:
    elapsed, why = fleet_shell_bench.once([sys.executable, "-c", "raise SystemExit(3)"], {})
    assert elapsed is None and why.startswith("exit 3")
    elapsed, why = fleet_shell_bench.once([sys.executable, "-c", "pass"], {})
    assert elapsed is not None and elapsed > 0 and why == ""


def report(ratios: dict[str, float]) -> BenchFleetShell:
    return {
        "where": "", "command": "true", "fanout": 64, "repeats": 1, "sizes": [16, 64, 256],
        "versions": {}, "runs": {}, "ratios": {n: dict(ratios) for n in ("16", "64", "256")},
        "goals": {},
    }  # fmt: skip


def test_the_goal_is_met_only_when_zcl_run_beats_every_peer() -> None:
    verdicts = goals.evaluate(goals.FLEET_SHELL, report({"pdsh": 3.4, "clush": 1.2}))
    assert all(v["met"] for v in verdicts.values()) and len(verdicts) == 3
    slower = goals.evaluate(goals.FLEET_SHELL, report({"pdsh": 3.4, "clush": 0.9}))
    assert not any(v["met"] for v in slower.values())
    assert slower["zcl_run_fastest_at_16"]["value"] == 0.9
