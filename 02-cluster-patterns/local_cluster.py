"""A whole cluster on this machine, put through failure: the project's main demo.

Starts a coordinator, N sleep workers and the monitor as separate processes, sends a batch of
tasks, and while they run:
  1. kills one busy worker with SIGKILL (a crash: its task must run elsewhere);
  2. freezes another with SIGSTOP (a hung node: declared dead, its task requeued; after SIGCONT
     its late result must be discarded and it must rejoin on its own).
Then it prints what happened, read from the coordinator's events and the client's report:
submitted, completed, retried, lost (must be 0), duplicates (must be 0) and the detection
time of each failure. Exit status 1 if anything was lost or duplicated or went undetected.

  python 02-cluster-patterns/local_cluster.py --workers 4 --tasks 100
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.client import BatchReport, MdpClient
from cluster_patterns.worker import TASK_STARTED
from zcl import cli
from zcl.errors import CliError

EVENTS_IN_READY_LINE = re.compile(r"^(\S+) \(events on (\S+)\)$")


@dataclass
class Summary:
    submitted: int
    completed: int
    errors: int
    retried: int
    lost: int
    duplicates: int
    late_results_discarded: int  # by the frozen worker itself or, if it replied first, by us
    detection_s: dict[str, float | None] = field(default_factory=dict)
    rejoined: bool = False
    frozen_held_task: bool = False  # declared dead with a task: its result is bound to be late
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        detected = all(v is not None for v in self.detection_s.values())
        late_dropped = self.late_results_discarded >= 1 or not self.frozen_held_task
        return (
            self.lost == 0 and self.duplicates == 0 and self.errors == 0 and detected
        ) and late_dropped


class EventLog:
    """The coordinator's events, as the scenario sees them."""

    def __init__(self, ctx: cli.Ctx, where: str) -> None:
        self.sub = ctx.socket(zmq.SUB)
        self.sub.linger = 0
        cli.connect(self.sub, where)
        self.sub.subscribe(b"")
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def pump(self, timeout_ms: int) -> None:
        if self.sub.poll(timeout_ms):
            while self.sub.poll(0):
                topic, body = self.sub.recv_multipart()
                self.seen.append((topic.decode(), json.loads(body)))

    def wait_for(
        self,
        topic: str,
        timeout_s: float,
        when: Callable[[dict[str, Any]], bool] = lambda e: True,
        **match: Any,
    ) -> dict[str, Any] | None:
        """The first event (already seen or still to come) on `topic` with these fields."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            for t, event in self.seen[checked:]:
                if t == topic and all(event.get(k) == v for k, v in match.items()) and when(event):
                    return event
            checked = len(self.seen)
            if time.monotonic() > deadline:
                return None
            self.pump(50)

    def count(self, topic: str) -> int:
        return sum(1 for t, _ in self.seen if t == topic)


Stats = dict[str, Any]


def start_coordinator(
    roles: processes.Roles,
    endpoint: str = processes.ANY_LOCAL_PORT,
    events: str = processes.ANY_LOCAL_PORT,
) -> tuple[processes.Child, str, str]:
    """A coordinator process; returns it with its request and events endpoints."""
    child = roles.spawn(
        "coordinator",
        "--endpoint",
        endpoint,
        "--events",
        events,
        "--insecure",  # every role runs on this machine; the 02 page says what this gives up
        module="cluster_patterns.coordinator",
    )
    match = EVENTS_IN_READY_LINE.match(child.endpoint)
    if not match:
        raise CliError(f"unexpected ready line: {child.endpoint}")
    return child, match.group(1), match.group(2)


def start_worker(
    roles: processes.Roles, endpoint: str, name: str, service: str = "sleep"
) -> processes.Child:
    # --verbose: each task's start is in the worker's output, where _detect looks for it
    return roles.spawn(
        name,
        *("--coordinator", endpoint, "--service", service, "--name", name, "--verbose"),
        module="cluster_patterns.worker",
    )


def rhythm_learned(*names: str) -> Callable[[Stats], bool]:
    """For wait_for("stats"): has the coordinator learned these workers' heartbeat rhythm?"""

    def learned(stats: Stats) -> bool:
        return all(stats["workers"].get(name, {}).get("interval_s") for name in names)

    return learned


def run_scenario(
    workers: int = 4,
    tasks: int = 100,
    task_s: float = 0.2,
    monitor_log: Path | None = None,
    echo: bool = False,
) -> Summary:
    started = time.monotonic()
    with processes.Roles("cluster_patterns.coordinator", echo=echo) as roles, zmq.Context() as ctx:
        ctx.linger = 0
        _, endpoint, events_at = start_coordinator(roles)
        events = EventLog(ctx, events_at)
        # The waits below are deadlines for a loaded machine, not expectations: each returns
        # the moment its event arrives.
        if not events.wait_for("stats", 15):  # proves our subscription is in place
            raise CliError("no events from the coordinator")
        monitor_args = ["--events", events_at, "--no-dashboard", "--metrics-port", "0"]
        if monitor_log:
            monitor_args += ["--json-log", str(monitor_log)]
        roles.spawn("monitor", *monitor_args, module="cluster_patterns.monitor")
        names = [f"w{n}" for n in range(1, workers + 1)]
        procs = {name: start_worker(roles, endpoint, name) for name in names}
        for name in names:
            if not events.wait_for("worker.joined", 15, worker=name):
                raise CliError(f"{name} never joined")

        # Start once the coordinator has learned every worker's heartbeat rhythm, as in a
        # cluster that has been up a while (a newcomer is allowed 7.5 s of silence).
        if events.wait_for("stats", 30, when=rhythm_learned(*names)) is None:
            raise CliError("the coordinator did not learn the workers' rhythm")
        client = MdpClient(ctx, endpoint, timeout_s=30)
        body = [mdp.get_codec("msgpack").encode({"seconds": task_s})]
        batch = processes.RoleThread(client.batch, b"sleep", [body] * tasks, 2 * workers)
        batch.start()
        detection: dict[str, float | None] = {}
        try:
            victim, frozen = names[0], names[1]
            print(f"SIGKILL {victim} (busy)")
            detection[f"{victim} SIGKILL"] = _detect(events, victim, procs[victim], signal.SIGKILL)
            print(f"SIGSTOP {frozen} (busy)")
            detection[f"{frozen} SIGSTOP"] = _detect(events, frozen, procs[frozen], signal.SIGSTOP)
            procs[frozen].signal(signal.SIGCONT)
            rejoined = events.wait_for("worker.joined", 10, worker=frozen) is not None
            print(f"SIGCONT {frozen}: rejoined = {rejoined}")
            batch.join(timeout=120)
        finally:
            client.close()
        report: BatchReport = batch.result
        # The coordinator's counters as they stand after the batch: a snapshot taken after now
        # (stats come every second), not the last one this scenario happened to read.
        batch_done = time.time()
        last_stats = events.wait_for("stats", 5, when=lambda e: e["ts"] >= batch_done)
        if last_stats is None:
            raise CliError("no stats from the coordinator after the batch")
        events.sub.close()
        # The thawed worker finds the coordinator gave up on it and drops the result of the
        # task it was frozen in (worker.py, on_result); had it replied before noticing, the
        # coordinator would have dropped the reply of a worker it no longer knows.
        dropped_by_worker = sum(DISCARDED in line for line in procs[frozen].output)
        if not dropped_by_worker:
            found = procs[frozen].wait_for_output(lambda line: DISCARDED in line, timeout_s=2)
            dropped_by_worker = found is not None
    return Summary(
        submitted=report.submitted,
        completed=len(report.outcomes),
        errors=sum(1 for o in report.outcomes.values() if o.error),
        retried=events.count("task.retried"),
        lost=report.submitted - len(report.outcomes),
        duplicates=report.duplicates,
        late_results_discarded=dropped_by_worker
        + last_stats["counters"].get("dropped.late-result", 0),
        detection_s=detection,
        rejoined=rejoined,
        frozen_held_task=any(
            topic == "task.retried" and str(e.get("reason", "")).startswith(f"worker {frozen} ")
            for topic, e in events.seen
        ),
        wall_s=time.monotonic() - started,
    )


DISCARDED = "discarding the result of a task from before a reconnect"  # worker.py's log line


def _wait_until_busy(events: EventLog, name: str, child: processes.Child) -> None:
    """Until the worker has a task running, not merely assigned: a task still on its way is
    lost with the connection when the worker reconnects, and then there is no late result to
    discard (the coordinator's task.assigned is sent before the worker reads it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        asked_at = time.time()
        already = sum(TASK_STARTED in line for line in child.output)
        assigned = events.wait_for(
            "task.assigned", deadline - time.monotonic(), when=since(asked_at), worker=name
        )
        if assigned is None:
            break
        if _starts_another(child, already):
            return
    raise CliError(f"{name} was given no task to be busy with")


def since(moment: float) -> Callable[[dict[str, Any]], bool]:
    return lambda event: float(event["ts"]) >= moment


def _starts_another(child: processes.Child, already: int) -> bool:
    """Does the worker log the start of a task beyond the `already` it had, within 2 s?"""
    starts = 0

    def another(line: str) -> bool:
        nonlocal starts
        starts += TASK_STARTED in line
        return starts > already

    return child.wait_for_output(another, timeout_s=2) is not None


def _detect(events: EventLog, name: str, child: processes.Child, sig: int) -> float | None:
    """Send a signal to a busy worker; return seconds until the coordinator declared it dead."""
    _wait_until_busy(events, name, child)
    sent_at = time.time()
    child.signal(sig)
    dead = events.wait_for("worker.dead", 10, worker=name)
    if dead is None:
        return None
    print(
        f"  {name} declared dead after {dead['ts'] - sent_at:.3f}s "
        f"(silent for {dead['silence']:.3f}s)"
    )
    return float(dead["ts"] - sent_at)


def cmd_run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="local-cluster-") as tmp:
        log_path = args.event_log or Path(tmp) / "events.jsonl"
        summary = run_scenario(args.workers, args.tasks, args.task_seconds, log_path, args.verbose)
    print(
        f"submitted {summary.submitted}, completed {summary.completed}, errors {summary.errors}, "
        f"retried {summary.retried}, lost {summary.lost}, duplicates {summary.duplicates}, "
        f"late results discarded {summary.late_results_discarded}"
    )
    for failure, seconds in summary.detection_s.items():
        print(f"  detection, {failure}: " + (f"{seconds:.3f}s" if seconds is not None else "NEVER"))
    if args.json:
        args.json.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return processes.verdict(
        "local_cluster",
        summary.ok,
        f"{summary.completed}/{summary.submitted} tasks exactly once through a "
        "SIGKILL and a SIGSTOP",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__)
    parser.add_argument("--workers", type=cli.positive_int, default=4)
    parser.add_argument("--tasks", type=cli.positive_int, default=100)
    parser.add_argument(
        "--task-seconds",
        type=float,
        default=0.2,
        help="a worker signalled right after it got a task is surely busy",
    )
    parser.add_argument("--event-log", type=Path, help="keep the monitor's JSON-lines event log")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--verbose", action="store_true", help="show every process's log")
    parser.set_defaults(func=cmd_run)
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
