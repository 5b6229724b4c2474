"""The figures `docker/simulate-cluster.sh bench` measures across containers, host to host.

Two parts, between which the driver (zcl_lab.cluster_driver) injects the faults and
times the coordinator's verdicts:

    transports   inside the cluster's network: `true` one at a time and with 32 in flight on
                 one node, through SSH (asyncssh, root with the cluster's SSH key) and through
                 ZeroMQ (the node agent, CurveZMQ on), taking turns round by round
    report       on the host: the transports and the detection times as one JSON file and a
                 table

    python -m zcl_lab.cluster_bench transports --node worker1 --out /events/transports.json
    python -m zcl_lab.cluster_bench report --transports transports.json \\
        --fault fail 0.71 2.30 --json bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cluster_sim.performance_comparison import (
    Runner,
    executor_runner,
    summary_ms,
    throughput,
    timed,
)
from zcl import cli, keys
from zcl.errors import CliError, ExecutorError
from zcl.protocols import NodeExecutorProtocol
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl_lab.cluster_workload import ssh_executor
from zcl_tools import goals
from zcl_tools.results import BenchDocker, RollingRestart, TimelineEvent, method_figure

AGENT_PORT = 5560  # where docker/node-init.sh starts each node's agent


async def measure_transports(args: argparse.Namespace) -> dict[str, Any]:
    controller = keys.load_controller_keys(args.keys)
    executors: dict[str, NodeExecutorProtocol] = {
        "ssh_persistent_asyncssh": ssh_executor(args.node, args.ssh_key),
        "zmq": ZmqNodeExecutor(args.node, f"tcp://{args.node}:{AGENT_PORT}", controller),
    }
    fresh_ssh = ssh_executor(args.node, args.ssh_key, persistent=False)
    runners: dict[str, Runner] = {name: executor_runner(e) for name, e in executors.items()}
    latency: dict[str, list[float]] = {name: [] for name in runners}
    fresh: list[float] = []
    done: dict[str, list[tuple[int, float]]] = {name: [] for name in runners}
    try:
        for run in runners.values():
            await run("true")  # connections and handshakes happen before the clock starts
        for round_number in range(1, args.rounds + 1):
            print(f"transports: round {round_number}/{args.rounds}", flush=True)
            await timed(executor_runner(fresh_ssh), "true", max(args.latency // 10, 2), fresh)
            for name, run in runners.items():  # turns, so a noisy moment hits both alike
                await timed(run, "true", args.latency, latency[name])
                done[name].append(await throughput(run, args.throughput, args.in_flight))
    finally:
        for executor in (*executors.values(), fresh_ssh):
            await executor.close()
    return {
        "node": args.node,
        "latency": {
            "ssh_fresh_asyncssh": summary_ms(fresh),
            **{name: summary_ms(samples) for name, samples in latency.items()},
        },
        "throughput": {
            **{
                name: {"per_s": round(sum(c for c, _ in runs) / sum(t for _, t in runs), 1)}
                for name, runs in done.items()
            },
            "in_flight": args.in_flight,
        },
    }


def cmd_transports(args: argparse.Namespace) -> int:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO
    try:
        figures = asyncio.run(measure_transports(args))
    except (ExecutorError, RuntimeError) as exc:  # RuntimeError: a command that failed
        raise CliError(f"cannot measure {args.node}: {exc}") from None
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} .*$")


def recorded_text(path: Path) -> str:
    """A terminal recording without the program's log lines (its frames are what we keep)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CliError(f"cannot read the recording {path}: {exc}") from None
    return "\n".join(LOG_LINE.sub("", line).rstrip() for line in lines).strip("\n") + "\n"


TIMELINE_TOPICS = {"worker.dead", "worker.joined", "worker.left"}


def timeline(lines: Iterable[str], since: float) -> list[TimelineEvent]:
    """What happened to each node from `since` on: the faults we injected (the driver's
    records) and the coordinator's verdicts on its workers, seconds from `since`, in order."""
    found: list[TimelineEvent] = []
    for line in lines:
        try:
            event = json.loads(line)
            ts = float(event["ts"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a torn line, or another writer's
        if ts < since:
            continue
        if event.get("source") == "simulate-cluster" and str(event.get("event")).startswith(
            "fault."
        ):
            found.append(
                {
                    "t": round(ts - since, 3),
                    "node": str(event["target"]),
                    "event": str(event["event"]),
                }
            )
        elif event.get("topic") in TIMELINE_TOPICS and event.get("worker"):
            found.append(
                {
                    "t": round(ts - since, 3),
                    "node": str(event["worker"]),
                    "event": str(event["topic"]),
                }
            )
    return sorted(found, key=lambda e: e["t"])


def build_report(
    transports: dict[str, Any],
    faults: list[list[str]],
    recordings: dict[str, str] | None = None,
    events: list[TimelineEvent] | None = None,
    rolling: RollingRestart | None = None,
) -> BenchDocker:
    latency, rate = transports["latency"], transports["throughput"]
    ssh_p50 = latency["ssh_persistent_asyncssh"]["p50_ms"]
    ssh_rate = rate["ssh_persistent_asyncssh"]["per_s"]
    report: BenchDocker = {
        "where": "docker, container to container",
        "node": transports["node"],
        "latency": latency,
        "throughput": rate,
        "ratios": {
            "zmq_vs_ssh_latency": round(latency["zmq"]["p50_ms"] / ssh_p50, 2),
            "zmq_vs_ssh_throughput": round(rate["zmq"]["per_s"] / ssh_rate, 2),
        },
        "detection": {
            kind: {"node": node, "detected_s": float(detected), "rejoined_s": float(rejoined)}
            for kind, node, detected, rejoined in faults
        },
        "recordings": recordings or {},
        "timeline": events or [],
        "goals": {},
    }
    if rolling is not None:
        report["rolling_restart"] = rolling
    report["goals"] = goals.evaluate(goals.DOCKER, report)
    return report


def print_report(report: BenchDocker, console: Console) -> None:
    in_flight = report["throughput"]["in_flight"]
    table = Table(title=f"SSH vs ZeroMQ between containers (node {report['node']})")
    table.add_column("method")
    for column in ("`true` p50 ms", "p99 ms", f"per s, {in_flight} in flight"):
        table.add_column(column, justify="right")
    for name, lat in report["latency"].items():
        per_s = method_figure(report["throughput"], name, "per_s")
        per_s_text = "-" if per_s is None else f"{per_s:,.0f}"
        table.add_row(name, f"{lat['p50_ms']:.2f}", f"{lat['p99_ms']:.2f}", per_s_text)
    console.print(table)
    ratios = report["ratios"]
    console.print(
        f"ZeroMQ/SSH latency {ratios['zmq_vs_ssh_latency']}, "
        f"throughput {ratios['zmq_vs_ssh_throughput']}x"
    )
    detection = Table(title="failure detection by the coordinator (fault -> worker.dead)")
    for column in ("fault", "detected after s", "rejoined after healing s"):
        detection.add_column(column)
    for kind, times in report["detection"].items():
        detection.add_row(kind, f"{times['detected_s']:.2f}", f"{times['rejoined_s']:.2f}")
    console.print(detection)
    rolling = report.get("rolling_restart")
    if rolling is not None:
        slowest = max(rolling["restart_s"].values(), default=0.0)
        console.print(
            f"rolling restart of {len(rolling['restart_s'])} agents under load: "
            f"{rolling['commands']} commands, {rolling['failed']} failed, {rolling['ran_twice']} "
            f"ran twice; a call took {rolling['wall_p50_s']:.3f} s (p50), "
            f"{rolling['wall_max_s']:.3f} s at most; an agent was away {slowest:.2f} s at most "
            "(SIGTERM to listening)"
        )


def cmd_report(args: argparse.Namespace) -> int:
    try:
        transports = json.loads(args.transports.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot read {args.transports}: {exc}") from None
    recordings = {name: recorded_text(Path(path)) for name, path in args.recording or []}
    events: list[TimelineEvent] = []
    if args.events is not None:
        try:
            events = timeline(args.events.read_text().splitlines(), args.since)
        except OSError as exc:
            raise CliError(f"cannot read the event log: {exc}") from None
    publish(build_report(transports, args.fault or [], recordings, events), args.json)
    return 0


def publish(report: BenchDocker, path: Path) -> None:
    """The report as tables and goals on the terminal, and as JSON in `path`."""
    print_report(report, Console())
    for line in goals.describe(report["goals"]):
        print(line)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = cli.command_parser(__doc__, "python -m zcl_lab.cluster_bench")
    transports = cli.add_command(commands, "transports", cmd_transports, "SSH vs ZeroMQ")
    transports.add_argument("--node", required=True, help="a node's host name, e.g. worker1")
    transports.add_argument("--out", type=Path, required=True, help="JSON file to write")
    transports.add_argument("--keys", type=Path, default=Path("/keys/controllers/runner"))
    transports.add_argument("--ssh-key", type=Path, default=Path("/keys/ssh/id_ed25519"))
    transports.add_argument("--rounds", type=cli.positive_int, default=5)
    transports.add_argument("--latency", type=cli.positive_int, default=60, help="per round")
    transports.add_argument("--throughput", type=cli.positive_int, default=400)
    transports.add_argument("--in-flight", type=cli.positive_int, default=32)

    report = cli.add_command(commands, "report", cmd_report, "the bench's JSON and table")
    report.add_argument("--transports", type=Path, required=True)
    report.add_argument(
        "--fault",
        nargs=3,
        action="append",
        metavar=("KIND", "DETECTED_S", "REJOINED_S"),
        help="one fault's figures; repeat for each",
    )
    report.add_argument(
        "--recording",
        nargs=2,
        action="append",
        metavar=("NAME", "FILE"),
        help="a terminal recording to keep in the report (status, dashboard)",
    )
    report.add_argument("--events", type=Path, help="the cluster's events.jsonl, for the timeline")
    report.add_argument("--since", type=float, default=0.0, help="Unix time the timeline starts")
    report.add_argument("--json", type=Path, required=True, help="where to save the report")
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
