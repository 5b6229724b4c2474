"""SSH against ZeroMQ on this machine, in one run: latency, throughput, large output.

It starts its own real OpenSSH sshd on a free loopback port (openssh_server.py, keys in a
temporary folder, a login user whose shell starts fast) and its own node agent with CurveZMQ
keys, then runs the same commands through each way of reaching a node:

    local_spawn              the command started here by asyncio: the floor any executor pays
    ssh_fresh_openssh        `ssh host true`, a new OpenSSH connection per command
    ssh_fresh_asyncssh       NodeExecutorSSH(persistent=False): a new asyncssh connection each
    ssh_persistent_asyncssh  NodeExecutorSSH: one connection, a channel per command
    zmq                      ZmqNodeExecutor -> node_agent, CurveZMQ on

Latency is `true` one at a time; throughput is `true` with --in-flight commands outstanding;
output_1mb is `head -c 1048576 /dev/zero`. The methods take turns in rounds, so a noisy moment
on a shared machine falls on all of them alike.

    python -m cluster_sim.performance_comparison --json results/bench-03.json   (make bench)
    python -m cluster_sim.performance_comparison --quick                        (under a minute)
    python -m zcl_tools.figures render          (refresh the documents' figures from the JSON)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from rich.console import Console
from rich.table import Table

from cluster_patterns import processes
from zcl import cli, keys
from zcl.errors import CliError
from zcl.executor_options import SshExecutorOptions
from zcl.journal import FileJournalWriter
from zcl.protocols import AsyncJournalWriterProtocol, NodeExecutorProtocol
from zcl.ssh_context import NodeExecutorSSH
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl_lab.openssh_server import OpenSshServer, SshdUnavailableError, login_user
from zcl_lab.simulated_cluster import SimulatedCluster, both_transports
from zcl_tools import goals
from zcl_tools.results import Bench03, JournalRates, Rate, ScheduledRun, method_figure

ONE_MB_COMMAND = "head -c 1048576 /dev/zero"
Runner = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Plan:
    rounds: int
    latency_per_round: int
    fresh_per_round: int
    throughput_per_round: int
    output_per_round: int
    in_flight: int
    nodes: int = 16  # simulated nodes in the scheduled run
    journal_records: int = 20_000

    @classmethod
    def choose(cls, quick: bool, in_flight: int) -> Plan:
        if quick:
            return cls(3, 20, 4, 300, 4, in_flight, journal_records=5000)
        return cls(5, 60, 8, 1000, 8, in_flight)


def summary_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = statistics.quantiles(ordered, n=100)[98] if len(ordered) > 1 else ordered[0]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "samples": len(ordered),
    }


async def local_spawn(command: str) -> None:
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()


def openssh_runner(sshd: OpenSshServer) -> Runner:
    async def run(command: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *sshd.ssh_command(command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await process.wait() != 0:
            raise RuntimeError(f"ssh exited with {process.returncode}")

    return run


def executor_runner(executor: NodeExecutorProtocol) -> Runner:
    async def run(command: str) -> None:
        result = await executor.run(command, timeout_s=60)
        if not result.ok:
            raise RuntimeError(f"{command!r} failed: {result.text('stderr')}")

    return run


async def timed(run: Runner, command: str, count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        await run(command)
        into.append(time.perf_counter() - started)


async def throughput(run: Runner, count: int, in_flight: int) -> tuple[int, float]:
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            await run("true")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count, time.perf_counter() - started


async def measure(
    sshd: OpenSshServer,
    agent_endpoint: str,
    keydir: Path,
    plan: Plan,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    node = sshd.node("node1")
    persistent = NodeExecutorSSH.for_node(node)
    fresh = NodeExecutorSSH.for_node(node, SshExecutorOptions(persistent=False))
    controller = keys.load_controller_keys(keys.controller_dir(keydir, "bench"))
    zmq_executor = ZmqNodeExecutor("node1", agent_endpoint, controller)
    latency_runners: dict[str, Runner] = {
        "local_spawn": local_spawn,
        "ssh_fresh_openssh": openssh_runner(sshd),
        "ssh_fresh_asyncssh": executor_runner(fresh),
        "ssh_persistent_asyncssh": executor_runner(persistent),
        "zmq": executor_runner(zmq_executor),
    }
    busy = {"ssh_persistent_asyncssh", "zmq"}  # the two a runner would really choose between
    latency: dict[str, list[float]] = {name: [] for name in latency_runners}
    output: dict[str, list[float]] = {name: [] for name in busy}
    done: dict[str, list[tuple[int, float]]] = {name: [] for name in busy}
    try:
        for run in latency_runners.values():
            await run("true")  # warm up: connections, handshakes, caches
        for round_number in range(1, plan.rounds + 1):
            progress(f"round {round_number}/{plan.rounds}")
            for name, run in latency_runners.items():
                count = plan.fresh_per_round if "fresh" in name else plan.latency_per_round
                await timed(run, "true", count, latency[name])
            for name in sorted(busy):
                await timed(
                    latency_runners[name], ONE_MB_COMMAND, plan.output_per_round, output[name]
                )
                done[name].append(
                    await throughput(
                        latency_runners[name], plan.throughput_per_round, plan.in_flight
                    )
                )
    finally:
        for executor in (persistent, fresh, zmq_executor):
            await executor.close()
    return {
        "latency": {name: summary_ms(samples) for name, samples in latency.items()},
        "throughput": {
            **{
                name: {"per_s": round(sum(c for c, _ in runs) / sum(t for _, t in runs), 1)}
                for name, runs in done.items()
            },
            "in_flight": plan.in_flight,
        },
        "output_1mb": {name: summary_ms(samples) for name, samples in output.items()},
    }


async def journal_rates(cluster: SimulatedCluster, count: int) -> JournalRates:
    """Records per second into the plain file journal and through the ZeroMQ journal, which
    acknowledges each record only once the collector has fsynced it."""
    rates: dict[str, Rate] = {}
    for name in ("file", "zmq"):
        journal: AsyncJournalWriterProtocol = (
            FileJournalWriter(cluster.dir / "file-rate.jsonl")
            if name == "file"
            else cluster.zmq_journal()
        )
        started = time.perf_counter()
        for n in range(count):
            await journal.write({"n": n, "node": "node01", "passed": True})
        await journal.close()  # the ZeroMQ writer returns once the last record is on disk
        rates[name] = {"per_s": round(count / (time.perf_counter() - started), 1)}
    return {"file": rates["file"], "zmq": rates["zmq"], "records": count}


async def cluster_figures(
    cluster: SimulatedCluster, plan: Plan
) -> tuple[ScheduledRun, JournalRates]:
    scheduled = await both_transports(cluster)
    return scheduled, await journal_rates(cluster, plan.journal_records)


def run_comparison(plan: Plan, progress: Callable[[str], None]) -> Bench03:
    with tempfile.TemporaryDirectory(prefix="zcl-bench-") as tmp, OpenSshServer() as sshd:
        keydir = Path(tmp) / "keys"
        keys.generate(keydir, nodes=["node1"], controllers=["bench"])
        with processes.Roles("zcl.agent.node_agent") as roles:
            agent = roles.spawn(
                "agent",
                "--bind",
                "tcp://127.0.0.1:*",
                "--keys",
                str(keys.node_dir(keydir, "node1")),
            )
            measured = asyncio.run(measure(sshd, agent.endpoint, keydir, plan, progress))
    progress(f"scheduled run on {plan.nodes} simulated nodes, and the journals")
    with SimulatedCluster(nodes=plan.nodes) as cluster:
        scheduled_run, journal = asyncio.run(cluster_figures(cluster, plan))
    figures: Bench03 = {
        "latency": measured["latency"],
        "throughput": measured["throughput"],
        "output_1mb": measured["output_1mb"],
        "scheduled_run": scheduled_run,
        "journal": journal,
        "goals": {},
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "libzmq": zmq.zmq_version(),
            "openssh": _openssh_version(),
            "ssh_login_shell": login_user().pw_shell,
            "quick": plan.rounds < 5,
        },
    }
    figures["goals"] = goals.evaluate(goals.TRANSPORT_03, figures)
    return figures


def _openssh_version() -> str:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip()


def print_table(figures: Bench03, console: Console) -> None:
    table = Table(title="SSH vs ZeroMQ, one node on this machine (true, one at a time)")
    in_flight = figures["throughput"]["in_flight"]
    table.add_column("method")
    for column in ("p50 ms", "p99 ms", f"per s, {in_flight} in flight", "1 MB p50 ms"):
        table.add_column(column, justify="right")
    for name, lat in figures["latency"].items():
        rate = method_figure(figures["throughput"], name, "per_s")
        big = method_figure(figures["output_1mb"], name, "p50_ms")
        table.add_row(
            name,
            f"{lat['p50_ms']:.2f}",
            f"{lat['p99_ms']:.2f}",
            "-" if rate is None else f"{rate:,.0f}",
            "-" if big is None else f"{big:.1f}",
        )
    console.print(table)
    for line in goals.describe(figures["goals"]):
        console.print(f"  {line}")


def cmd_compare(args: argparse.Namespace) -> int:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO
    console = Console()
    plan = Plan.choose(args.quick, args.in_flight)
    try:
        figures = run_comparison(plan, lambda text: console.print(f"[dim]{text}[/dim]"))
    except SshdUnavailableError as exc:
        raise CliError(str(exc)) from None
    print_table(figures, console)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"saved {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__)
    parser.prog = "python -m cluster_sim.performance_comparison"
    parser.add_argument("--quick", action="store_true", help="fewer samples: under a minute")
    parser.add_argument("--json", type=Path, help="save the figures here")
    parser.add_argument("--in-flight", type=cli.positive_int, default=32)
    parser.set_defaults(func=cmd_compare)
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
