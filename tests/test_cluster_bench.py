"""cluster_bench's host-side parts: following the event log for a node's event, and the report.

The transport measurement runs inside the Docker cluster (tests/test_simulate_cluster.py runs
`simulate-cluster.sh bench`); what the script asks of the host is tested here on files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cluster_sim.lab.cluster_bench import build_report, timeline
from tests.helpers import python_module


def wait_event_command(events: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cluster_sim.lab.cluster_bench",
        "wait-event",
        "--events",
        str(events),
        *args,
    ]


def wait_event(events: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return python_module(
        "cluster_sim.lab.cluster_bench", "wait-event", "--events", str(events), *args
    )


def line(**event: object) -> str:
    return json.dumps(event) + "\n"


def test_wait_event_prints_the_seconds_to_the_first_matching_event(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        line(topic="worker.dead", worker="worker3", ts=90.0)  # before the fault: not ours
        + line(topic="worker.dead", worker="worker2", ts=101.0)  # another node
        + line(topic="worker.joined", worker="worker3", ts=101.5)  # another topic
        + "not json, a stray line\n"
        + line(topic="worker.dead", worker="worker3", ts=100.75)
        + line(topic="worker.dead", worker="worker3", ts=102.0)
    )
    done = wait_event(events, "--topic", "worker.dead", "--worker", "worker3", "--since", "100")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0.750"


def test_wait_event_follows_lines_appended_while_it_waits(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(line(topic="stats", ts=1.0))
    offset = events.stat().st_size
    process = subprocess.Popen(
        wait_event_command(
            events,
            "--topic",
            "worker.joined",
            "--worker",
            "worker1",
            "--since",
            "5",
            "--offset",
            str(offset),
            "--timeout",
            "20",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        text = line(topic="worker.joined", worker="worker1", ts=7.5)
        with events.open("a") as log:  # a line torn across two writes must wait for its end
            log.write(text[:10])
            log.flush()
            log.write(text[10:])
        out, _ = process.communicate(timeout=25)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0
    assert out.strip() == "2.500"


def test_wait_event_gives_up_with_one_clear_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(line(topic="worker.dead", worker="worker2", ts=10.0))
    args = ("--topic", "worker.dead", "--worker", "worker3", "--since", "1", "--timeout", "0.3")
    done = wait_event(events, *args)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("no worker.dead for worker3 within 0.3 s")
    missing = wait_event(tmp_path / "absent.jsonl", *args)
    assert missing.returncode == 1 and "cannot read the event log" in missing.stderr


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
    report = build_report(transports, [["fail", "0.78", "0.86"], ["pause", "0.65", "0.17"]])
    assert report["ratios"] == {"zmq_vs_ssh_latency": 0.33, "zmq_vs_ssh_throughput": 2.7}
    assert report["detection"]["fail"] == {"detected_s": 0.78, "rejoined_s": 0.86}
    assert set(report["detection"]) == {"fail", "pause"}
    assert report["latency"]["zmq"]["p50_ms"] == 2.0


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
