"""cluster_bench's host-side part: the report.

The transport measurement runs inside the Docker cluster (tests/test_simulate_cluster.py runs
`simulate-cluster.sh bench`); the report is tested here on data.
"""

from __future__ import annotations

import json

from rich.console import Console

from zcl_lab.cluster_bench import build_report, print_report, timeline
from zcl_tools.results import RollingRestart


def line(**event: object) -> str:
    return json.dumps(event) + "\n"


def test_the_report_carries_the_ratios_and_each_fault() -> None:
    transports = {
        "node": "worker1",
        "latency": {
            "ssh_fresh_asyncssh": {"p50_ms": 140.0, "p99_ms": 170.0, "samples": 10},
            "ssh_persistent_asyncssh": {"p50_ms": 6.0, "p99_ms": 20.0, "samples": 100},
            "zmq": {"p50_ms": 2.0, "p99_ms": 7.0, "samples": 100},
        },
        "throughput": {
            "ssh_persistent_asyncssh": {"per_s": 300.0},
            "zmq": {"per_s": 810.0},
            "in_flight": 32,
        },
    }
    faults = [["fail", "worker3", "0.78", "0.86"], ["pause", "worker3", "0.65", "0.17"]]
    report = build_report(transports, faults)
    assert report["ratios"] == {"zmq_vs_ssh_latency": 0.33, "zmq_vs_ssh_throughput": 2.7}
    fail = {"node": "worker3", "detected_s": 0.78, "rejoined_s": 0.86}  # not the measured node
    assert report["detection"]["fail"] == fail
    assert set(report["detection"]) == {"fail", "pause"}
    assert report["latency"]["zmq"]["p50_ms"] == 2.0
    assert "rolling_restart" not in report  # a bench that did not measure it says nothing
    rolling: RollingRestart = {
        "commands": 48,
        "failed": 0,
        "ran_twice": 0,
        "served": {"w1 zmq": 40, "w1 ssh": 8},
        "wall_p50_s": 0.05,
        "wall_max_s": 0.4,
        "restart_s": {"w1": 1.0},
    }
    with_rolling = build_report(transports, faults[:1], rolling=rolling)
    assert with_rolling["rolling_restart"] == rolling
    printed = Console(record=True, width=200)
    print_report(with_rolling, printed)
    assert "48 commands, 0 failed, 0 ran twice" in printed.export_text()


def test_the_timeline_keeps_our_faults_and_the_coordinators_verdicts_in_order() -> None:
    lines = [
        '{"ts": 99.0, "source": "simulate-cluster", "event": "fault.start.fail", "target": "w3"}',
        '{"ts": 100.0, "source": "simulate-cluster", "event": "fault.start.fail", "target": "w3"}',
        '{"ts": 100.8, "topic": "worker.dead", "worker": "w3", "silence": 0.8}',
        '{"ts": 100.5, "topic": "task.done", "worker": "w1"}',
        '{"ts": 101.0, "source": "simulate-cluster", "event": "cluster.stopped", "target": "all"}',
        "not json at all",
        '{"ts": 102.0, "source": "simulate-cluster", "event": "fault.end.fail", "target": "w3"}',
        '{"ts": 102.5, "topic": "worker.joined", "worker": "w3"}',
        '{"ts": 101.5, "topic": "worker.dead"',  # torn
    ]
    assert timeline(lines, since=100.0) == [
        {"t": 0.0, "node": "w3", "event": "fault.start.fail"},
        {"t": 0.8, "node": "w3", "event": "worker.dead"},
        {"t": 2.0, "node": "w3", "event": "fault.end.fail"},
        {"t": 2.5, "node": "w3", "event": "worker.joined"},
    ]
