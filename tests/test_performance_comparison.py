"""The SSH-vs-ZeroMQ comparison: it runs end to end and writes the JSON others check.

Correctness only: the figures themselves are measured by `make bench`, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from cluster_sim import performance_comparison
from cluster_sim.performance_comparison import Plan
from zcl_lab import openssh_server
from zcl_lab.openssh_server import OpenSshServer
from zcl_tools import goals
from zcl_tools.results import Bench03

METHODS = [
    "local_spawn",
    "ssh_fresh_openssh",
    "ssh_fresh_asyncssh",
    "ssh_persistent_asyncssh",
    "zmq",
]
TINY = Plan(
    rounds=1,
    latency_per_round=3,
    fresh_per_round=1,
    throughput_per_round=40,
    output_per_round=1,
    in_flight=8,
    nodes=4,
    journal_records=200,
)


def test_a_tiny_run_writes_the_documented_shape(
    sshd: OpenSshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Plan, "choose", classmethod(lambda cls, quick, in_flight: TINY))
    target = tmp_path / "out" / "bench-03.json"
    assert performance_comparison.main(["--quick", "--json", str(target)]) == 0
    figures = json.loads(target.read_text())
    assert list(figures["latency"]) == METHODS
    for method in METHODS:
        assert 0 < figures["latency"][method]["p50_ms"] <= figures["latency"][method]["p99_ms"]
    assert figures["throughput"]["in_flight"] == 8
    for method in ("ssh_persistent_asyncssh", "zmq"):
        assert figures["throughput"][method]["per_s"] > 0
        assert figures["output_1mb"][method]["p50_ms"] > 0
    assert set(figures["goals"]) >= {
        "zmq_latency_vs_local_spawn",
        "zmq_latency_vs_ssh_persistent",
        "zmq_throughput_vs_ssh_persistent",
        "zmq_1mb_vs_ssh_persistent",
    }
    assert figures["machine"]["ssh_login_shell"]
    assert figures["scheduled_run"]["journals_equal"] is True
    assert figures["scheduled_run"]["records"] == 4 + 2 * 6 + 2 * 2 + 4  # 6 leaf pairs, 4 leaves
    for journal in ("file", "zmq"):
        assert figures["journal"][journal]["per_s"] > 0
    assert "zmq_journal_vs_file_journal" in figures["goals"]


def figures_with(zmq_p50: float, zmq_rate: float, zmq_1mb: float) -> Bench03:
    """Only the figures these goals read: the rest of a real run is left out."""
    figures: dict[str, Any] = {
        "latency": {
            "local_spawn": {"p50_ms": 1.0},
            "ssh_persistent_asyncssh": {"p50_ms": 4.5},
            "zmq": {"p50_ms": zmq_p50},
        },
        "throughput": {"ssh_persistent_asyncssh": {"per_s": 400}, "zmq": {"per_s": zmq_rate}},
        "output_1mb": {"ssh_persistent_asyncssh": {"p50_ms": 10}, "zmq": {"p50_ms": zmq_1mb}},
    }
    return cast(Bench03, figures)


def test_goals_are_judged_from_the_ratios() -> None:
    met = goals.evaluate(goals.TRANSPORT_03, figures_with(zmq_p50=1.2, zmq_rate=1300, zmq_1mb=9))
    assert len(met) == 4  # the journal and the scheduled run were not measured here
    assert all(goal["met"] for goal in met.values())
    missed = goals.evaluate(
        goals.TRANSPORT_03, figures_with(zmq_p50=1.6, zmq_rate=1100, zmq_1mb=11)
    )
    assert not any(goal["met"] for goal in missed.values())
    assert missed["zmq_throughput_vs_ssh_persistent"]["value"] == 2.75
    assert missed["zmq_throughput_vs_ssh_persistent"]["target"] == ">= 3"


def test_without_sshd_it_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(openssh_server, "SSHD", "/nonexistent/sshd")
    assert performance_comparison.main(["--quick"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "openssh-server" in error
