"""local_cluster: the main demo passes, and its command line reports and saves a summary."""

from __future__ import annotations

import json
from pathlib import Path

from cluster_patterns import local_cluster


def test_demo_command_saves_a_passing_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    assert local_cluster.main(["--workers", "3", "--tasks", "120", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert summary["completed"] == summary["submitted"] == 120
    assert set(summary["detection_s"]) == {"w1 SIGKILL", "w2 SIGSTOP"}
    assert summary["frozen_held_task"]  # frozen busy, as the scenario means to
    assert summary["late_results_discarded"] >= 1  # the frozen worker's, as the demo promises


def test_summary_fails_on_loss_or_missed_detection() -> None:
    good = local_cluster.Summary(10, 10, 0, 1, 0, 0, 0, {"w1 SIGKILL": 0.8})
    assert good.ok
    assert not local_cluster.Summary(10, 9, 0, 1, 1, 0, 0, {"w1 SIGKILL": 0.8}).ok
    assert not local_cluster.Summary(10, 10, 0, 1, 0, 0, 0, {"w1 SIGKILL": None}).ok
    frozen: dict[str, float | None] = {"w2 SIGSTOP": 0.8}
    held = {"frozen_held_task": True}
    assert not local_cluster.Summary(10, 10, 0, 1, 0, 0, 0, frozen, **held).ok  # its late result?
    assert local_cluster.Summary(10, 10, 0, 1, 0, 0, 1, frozen, **held).ok
    assert local_cluster.Summary(10, 10, 0, 1, 0, 0, 0, frozen).ok  # frozen while idle: none due
