"""The monitor: a live view of the cluster built only from the coordinator's published events.

It subscribes to the events PUB socket (status broadcasting is PUB-SUB: a monitor that falls
behind loses events, never slows the coordinator) and keeps:
  * each worker's state, the age of its last message, tasks done and failed;
  * the task rate over the last 10 s and response time p50/p99 over the last 1,000 tasks;
  * failure detection: how long each dead worker had been silent when it was declared dead.

It shows them as a terminal dashboard (rich), serves the same figures at /metrics in the
Prometheus text format, and can append every event to a JSON-lines file. In a container use
--no-dashboard; `--duration` stops it after so many seconds.

  python 02-cluster-patterns/monitor.py --events tcp://127.0.0.1:5556 --metrics-port 9100
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import zmq

try:  # the monitor extra: not part of the core install that nodes get
    from prometheus_client import CollectorRegistry, Gauge, start_http_server
    from prometheus_client import Counter as PromCounter
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
except ModuleNotFoundError as missing:
    raise SystemExit(
        f"zcl-monitor: error: {missing.name} is missing: pip install 'zmq-cluster-lab[monitor]'"
    ) from None

from zcl import cli, curve

EVENTS_HWM = 20_000  # events queued for us (and for each subscriber at the coordinator)
FLUSH_EVERY_S = 0.1  # the JSON log reaches the disk at least this often while events flow
log = logging.getLogger("monitor")
TASK_OUTCOMES = {
    "task.done": "done",
    "task.failed": "failed",
    "task.retried": "retried",
    "task.expired": "expired",
}


class ClusterView:
    """The cluster as the events describe it, plus the Prometheus metrics that mirror it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.workers: dict[str, dict[str, Any]] = {}
        self.outcomes: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=1000)
        self.finished_at: deque[float] = deque(maxlen=100_000)
        self.detections: list[float] = []
        self.queued = self.in_flight = 0
        self.m_tasks = PromCounter(
            "cluster_tasks", "Tasks by outcome", ["outcome"], registry=registry
        )
        self.m_workers = Gauge("cluster_workers", "Workers by state", ["state"], registry=registry)
        self.m_latency = Gauge(
            "cluster_task_latency_seconds",
            "Response time over the last 1000 tasks",
            ["quantile"],
            registry=registry,
        )
        self.m_detect = Gauge(
            "cluster_failure_detection_seconds",
            "Silence before the last worker was declared dead",
            registry=registry,
        )
        self.m_rate = Gauge(
            "cluster_task_rate_per_second", "Tasks done per second, last 10 s", registry=registry
        )
        self.m_queued = Gauge(
            "cluster_tasks_queued", "Tasks waiting for a worker", registry=registry
        )

    def apply(self, topic: str, event: dict[str, Any]) -> None:
        if topic in TASK_OUTCOMES:
            self.outcomes[TASK_OUTCOMES[topic]] += 1
            self.m_tasks.labels(TASK_OUTCOMES[topic]).inc()
        if topic == "task.done":
            self.latencies.append(event["seconds"] + event["waited"])
            self.finished_at.append(event["ts"])
        elif topic == "worker.joined":
            self.workers[event["worker"]] = {
                "state": "idle",
                "service": event["service"],
                "done": 0,
                "failed": 0,
                "heard_s": 0.0,
            }
        elif topic in ("worker.dead", "worker.left") and event["worker"] in self.workers:
            self.workers[event["worker"]]["state"] = topic.split(".")[1]
            if topic == "worker.dead":
                self.detections.append(event["silence"])
                self.m_detect.set(event["silence"])
        elif topic == "stats":
            self.queued, self.in_flight = event["queued"], event["in_flight"]
            for name, state in event["workers"].items():
                self.workers[name] = state
        self._refresh_gauges()

    def task_rate(self, window_s: float = 10.0) -> float:
        cutoff = time.time() - window_s
        return sum(1 for ts in self.finished_at if ts >= cutoff) / window_s

    def percentile(self, q: int) -> float | None:
        if len(self.latencies) < 2:
            return None
        return statistics.quantiles(self.latencies, n=100)[q - 1]

    def _refresh_gauges(self) -> None:
        states = Counter(w["state"] for w in self.workers.values())
        for state in ("idle", "busy", "dead", "left"):
            self.m_workers.labels(state).set(states[state])
        for q in (50, 99):
            value = self.percentile(q)
            if value is not None:
                self.m_latency.labels(f"0.{q}").set(value)
        self.m_rate.set(self.task_rate())
        self.m_queued.set(self.queued)

    def render(self) -> Group:
        table = Table(title="workers", expand=False)
        for column in ("worker", "service", "state", "last heard", "done", "failed"):
            table.add_column(column)
        for name, w in sorted(self.workers.items()):
            heard = f"{w.get('heard_s', 0):.2f}s" if w["state"] in ("idle", "busy") else "-"
            table.add_row(name, w["service"], w["state"], heard, str(w["done"]), str(w["failed"]))
        p50, p99 = self.percentile(50), self.percentile(99)
        totals = Table.grid(padding=(0, 2))
        totals.add_row(
            f"rate {self.task_rate():.1f}/s",
            f"queued {self.queued}",
            f"running {self.in_flight}",
            f"p50 {p50 * 1000:.1f} ms" if p50 is not None else "p50 -",
            f"p99 {p99 * 1000:.1f} ms" if p99 is not None else "p99 -",
            " ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
        )
        detect = ", ".join(f"{s:.2f}s" for s in self.detections[-5:]) or "none yet"
        return Group(table, totals, f"failure detection (silence when declared dead): {detect}")


def watch(args: argparse.Namespace, stop: threading.Event) -> ClusterView:
    registry = CollectorRegistry()
    view = ClusterView(registry)
    server = None
    if args.metrics_port is not None:
        server, _ = start_http_server(args.metrics_port, addr=args.metrics_host, registry=registry)
    journal: IO[str] | None = args.json_log.open("a") if args.json_log else None
    try:
        with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
            sub.linger = 0
            sub.rcvhwm = EVENTS_HWM  # a burst waits here instead of being dropped
            keys = curve.client_keys(args)
            if keys is not None:
                curve.connect_curve(sub, keys, curve.COORDINATOR)
            cli.connect(sub, args.events)
            sub.subscribe(b"")
            where = f" (metrics on port {server.server_port})" if server else ""
            cli.announce_ready(f"monitor{where}", args.events)
            deadline = time.monotonic() + args.duration if args.duration else float("inf")
            with (
                Live(view.render(), refresh_per_second=4, transient=False, auto_refresh=False)
                if args.dashboard
                else _Quiet() as live
            ):
                flushed = time.monotonic()
                while not stop.is_set() and time.monotonic() < deadline:
                    while sub.poll(250):
                        topic, body = sub.recv_multipart()
                        event = json.loads(body)
                        view.apply(topic.decode(), event)
                        if journal:
                            journal.write(json.dumps({"topic": topic.decode(), **event}) + "\n")
                            # One flush per event cost more than the event: in a busy cluster
                            # the coordinator's queue for us overflowed and events were lost.
                            if time.monotonic() - flushed > FLUSH_EVERY_S:
                                journal.flush()
                                flushed = time.monotonic()
                    if journal:
                        journal.flush()
                    live.update(view.render(), refresh=True)
    finally:
        if journal:
            journal.close()
        if server:
            server.shutdown()
    return view


class _Quiet:
    """Stands in for rich's Live when there is no dashboard."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, *_: object, **__: object) -> None:
        return None


def cmd_run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    view = watch(args, stop)
    log.info("monitor stopped: %s", dict(view.outcomes))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__, "zcl-monitor")
    cli.add_endpoint(parser, "--events", "COORDINATOR_EVENTS", "tcp://127.0.0.1:5556")
    parser.add_argument("--metrics-port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--no-metrics", dest="metrics_port", action="store_const", const=None)
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--json-log", type=Path, help="append every event to this JSON-lines file")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    curve.add_client_keys(parser)
    parser.set_defaults(func=cmd_run)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    raise SystemExit(main())
