"""monitor: the view built from events, and the same figures at /metrics."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import zmq
from prometheus_client import CollectorRegistry

from cluster_patterns import processes
from cluster_patterns.monitor import ClusterView
from zcl import cli


def test_view_tracks_workers_tasks_and_detections() -> None:
    view = ClusterView(CollectorRegistry())
    now = time.time()
    view.apply("worker.joined", {"ts": now, "worker": "w1", "service": "echo", "tags": []})
    for n in range(10):
        view.apply("task.done", {"ts": now, "task": n, "seconds": 0.01 * (n + 1), "waited": 0.0})
    view.apply("task.retried", {"ts": now, "task": 3})
    view.apply("worker.dead", {"ts": now, "worker": "w1", "silence": 0.8, "reason": "silent"})
    assert view.workers["w1"]["state"] == "dead"
    assert view.outcomes == {"done": 10, "retried": 1}
    assert view.detections == [0.8]
    assert view.percentile(50) is not None and view.percentile(99) is not None
    assert view.task_rate() == 1.0  # ten in the last ten seconds
    view.render()  # the dashboard renders without a terminal


def test_monitor_process_serves_metrics_and_logs_events(tmp_path: Path) -> None:
    log_path = tmp_path / "events.jsonl"
    with (
        zmq.Context() as ctx,
        ctx.socket(zmq.PUB) as pub,
        processes.Roles("cluster_patterns.monitor") as roles,
    ):
        pub.linger = 0
        where = cli.bind(pub, processes.ANY_LOCAL_PORT)
        child = roles.spawn(
            "monitor",
            "--events",
            where,
            "--no-dashboard",
            "--metrics-port",
            "0",
            "--json-log",
            str(log_path),
            "--duration",
            "20",
        )
        port = int(re.search(r"metrics on port (\d+)", child.output[-1]).group(1))  # type: ignore[union-attr]
        metrics = ""
        for n in range(100):  # publish until the subscription has caught up (slow joiner)
            event = {"ts": time.time(), "task": n, "seconds": 0.01, "waited": 0.0}
            pub.send_multipart([b"task.done", json.dumps(event).encode()])
            metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
            if 'cluster_tasks_total{outcome="done"}' in metrics:
                break
        assert 'cluster_tasks_total{outcome="done"}' in metrics
        assert "cluster_task_latency_seconds" in metrics
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines and all(line["topic"] == "task.done" for line in lines)
