"""Fan-out at cluster scale: one controller, N nodes, `true` on every one, ZeroMQ against SSH.

For each size N (16, 64 and 256 by default) it starts N node agents, each its own process, and
one real sshd that every node's SSH side logs in through (zcl_lab.simulated_cluster),
then runs the controller of each side in a process of its own (fanout_controller), taking
turns which side goes first:

    cold   from nothing to `true`'s result from every node: the context built and every
           connection set up (CurveZMQ handshakes; asyncssh key exchanges), with the
           controller's CPU seconds and peak memory
    warm   the same group run over the connections now open, again and again: p50 and p99 of
           the whole gather

Both sides go through the group run cluster_runner would call (`run_group`, at most
--max-concurrency commands at once). How each figure grows with N is a fitted slope per node;
what would stop each side first on this machine (file descriptors, memory) is worked out from
what one node costs it. A size that either side could not complete ends the run with one
line and exit status 1: no partial figure is saved as a result.

    python -m zcl_lab.fanout_bench --json results/bench-fanout.json   (make bench)
    python -m zcl_lab.fanout_bench --sizes 4 8 --warm-rounds 3         (a quick look)
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from zcl import cli
from zcl.errors import CliError
from zcl_lab.fanout_controller import SIDES
from zcl_lab.openssh_server import MAX_STARTUPS, SshdUnavailableError
from zcl_lab.simulated_cluster import SimulatedCluster
from zcl_tools import goals
from zcl_tools.results import (
    BenchFanout,
    FanoutAllAtOnce,
    FanoutGrowth,
    FanoutLimits,
    FanoutSide,
)

DEFAULT_SIZES = (16, 64, 256)


def controller(
    descriptor: Path, side: str, args: argparse.Namespace, nodes: int, *, at_once: int, rounds: int
) -> FanoutSide:
    """One side's fan-out, measured in a process of its own."""
    command = [
        *(sys.executable, "-m", "zcl_lab.fanout_controller"),
        *("--descriptor", str(descriptor), "--side", side),
        *("--warm-rounds", str(rounds), "--max-concurrency", str(at_once)),
        *("--timeout", str(args.timeout)),
    ]
    allowed_s = args.timeout * (rounds + 2) + 60
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=allowed_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise CliError(f"{side} could not complete {nodes} nodes within {allowed_s:g} s") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise CliError(said.removeprefix("fanout_controller: error: "))
    figures: FanoutSide = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def measure_size(
    nodes: int, turn: int, args: argparse.Namespace, *, probe: bool
) -> tuple[dict[str, FanoutSide], dict[str, FanoutAllAtOnce]]:
    """Both sides at this size; with `probe`, also every node at once, past run_group's
    concurrency cap, to see which side stops and at what (recorded, not a failure)."""
    # Starting N agents on this machine's cores takes time in proportion to N.
    with SimulatedCluster(nodes=nodes, leaves=1, start_timeout_s=60 + nodes) as cluster:
        descriptor = cluster.dir / "cluster.json"
        descriptor.write_text(json.dumps(cluster.descriptor().to_dict()))
        order = SIDES if turn % 2 == 0 else tuple(reversed(SIDES))  # neither always first
        # A cold fan-out is one shot, and one shot on a shared machine is noisy: each side's
        # controller runs --cold-runs times, sides taking turns, and the cold figures are the
        # median run's (by wall time); the warm gathers are the first run's.
        runs: dict[str, list[FanoutSide]] = {side: [] for side in SIDES}
        for attempt in range(args.cold_runs):
            for side in order if attempt % 2 == 0 else tuple(reversed(order)):
                print(f"  {nodes} nodes: {side} ({attempt + 1}/{args.cold_runs}) ...", flush=True)
                rounds = args.warm_rounds if attempt == 0 else 1
                runs[side].append(
                    controller(
                        descriptor, side, args, nodes, at_once=args.max_concurrency, rounds=rounds
                    )
                )
        measured = {side: median_cold(runs[side]) for side in SIDES}
        probed: dict[str, FanoutAllAtOnce] = {}
        for side in order if probe else ():
            print(f"  {nodes} nodes, all at once: {side} ...", flush=True)
            try:
                figures = controller(descriptor, side, args, nodes, at_once=nodes, rounds=1)
                probed[side] = {
                    "completed": True,
                    "cold_s": figures["cold"]["wall_s"],
                    "failure": "",
                }
            except CliError as exc:
                probed[side] = {"completed": False, "cold_s": 0.0, "failure": str(exc)}
        return {side: measured[side] for side in SIDES}, probed


def median_cold(runs: Sequence[FanoutSide]) -> FanoutSide:
    """The first run, with the cold figures of the run whose cold wall time is the median."""
    middle = sorted(runs, key=lambda r: r["cold"]["wall_s"])[len(runs) // 2]
    chosen = runs[0].copy()
    chosen["cold"], chosen["cold_runs"] = middle["cold"], len(runs)
    return chosen


def slope(sizes: Sequence[int], values: Sequence[float]) -> float:
    """Seconds (or CPU seconds) each further node adds: the least-squares line's slope."""
    if len(sizes) < 2:
        return 0.0
    return round(statistics.linear_regression(sizes, values).slope, 6)


def growth(sizes: Sequence[int], runs: dict[str, dict[str, FanoutSide]], side: str) -> FanoutGrowth:
    at = [runs[str(n)][side] for n in sizes]
    return {
        "cold_s_per_node": slope(sizes, [r["cold"]["wall_s"] for r in at]),
        "cold_cpu_s_per_node": slope(sizes, [r["cold"]["cpu_s"] for r in at]),
        "warm_p50_s_per_node": slope(sizes, [r["warm"]["p50_s"] for r in at]),
        "rss_mib_per_node": slope(sizes, [r["cold"]["rss_growth_mib"] for r in at]),
    }


def limits(
    largest: FanoutSide, rss_per_node: float, nofile: int, available_mib: float
) -> FanoutLimits:
    """Where this side would stop on this machine, from what one node costs its controller:
    the open-file limit in force, and the memory available; the smaller bites first."""
    fds = max(largest["fds_per_node"], 0.01)
    at_fds = int(nofile / fds)
    at_memory = int(available_mib / rss_per_node) if rss_per_node > 0 else 10**9
    bites = (
        f"file descriptors (RLIMIT_NOFILE {nofile})"
        if at_fds <= at_memory
        else f"memory ({available_mib:,.0f} MiB available)"
    )
    return {
        "fds_per_node": largest["fds_per_node"],
        "rss_mib_per_node": round(rss_per_node, 3),
        "nofile": nofile,
        "n_at_fd_limit": at_fds,
        "n_at_memory_limit": at_memory,
        "bites_first": bites,
    }


def available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build_report(
    sizes: Sequence[int],
    runs: dict[str, dict[str, FanoutSide]],
    args: argparse.Namespace,
    all_at_once: dict[str, FanoutAllAtOnce] | None = None,
) -> BenchFanout:
    largest = runs[str(sizes[-1])]
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the context raises the soft one to it
    memory = available_mib()
    grown = {side: growth(sizes, runs, side) for side in SIDES}
    zmq, ssh = largest["zmq"], largest["ssh"]
    report: BenchFanout = {
        "where": f"{platform.node()}: N node agents and one sshd on this machine, "
        "each controller in a process of its own",
        "command": "true",
        "max_concurrency": args.max_concurrency,
        "warm_rounds": args.warm_rounds,
        "sizes": list(sizes),
        "runs": runs,
        "growth": grown,
        "limits": {
            side: limits(largest[side], max(grown[side]["rss_mib_per_node"], 0.0), nofile, memory)
            for side in SIDES
        },
        "sshd_max_startups": MAX_STARTUPS,
        "all_at_once": all_at_once or {},
        "ratios": {
            "cold_zmq_vs_ssh_wall": round(zmq["cold"]["wall_s"] / ssh["cold"]["wall_s"], 4),
            "cold_zmq_vs_ssh_cpu": round(zmq["cold"]["cpu_s"] / ssh["cold"]["cpu_s"], 4),
            "warm_zmq_vs_ssh_p50": round(zmq["warm"]["p50_s"] / ssh["warm"]["p50_s"], 4),
            "warm_zmq_vs_ssh_cpu": round(
                zmq["warm"]["cpu_s_per_gather"] / ssh["warm"]["cpu_s_per_gather"], 4
            ),
        },
        "goals": {},
    }
    report["goals"] = goals.evaluate(goals.FANOUT, report)
    return report


def print_report(report: BenchFanout, console: Console) -> None:
    table = Table(title=f"`true` on every node, at most {report['max_concurrency']} at once")
    for column in ("nodes", "side", "cold s", "cold CPU s", "peak MiB", "warm p50 s", "p99 s"):
        table.add_column(column, justify="right")
    for n in report["sizes"]:
        for side in SIDES:
            r = report["runs"][str(n)][side]
            table.add_row(
                str(n),
                side,
                f"{r['cold']['wall_s']:.3f}",
                f"{r['cold']['cpu_s']:.3f}",
                f"{r['cold']['peak_rss_mib']:.0f}",
                f"{r['warm']['p50_s']:.4f}",
                f"{r['warm']['p99_s']:.4f}",
            )
    console.print(table)
    for side in SIDES:
        g, lim = report["growth"][side], report["limits"][side]
        console.print(
            f"{side}: each node adds {g['cold_s_per_node'] * 1000:.2f} ms cold, "
            f"{g['warm_p50_s_per_node'] * 1000:.3f} ms warm; stops first at about "
            f"N={min(lim['n_at_fd_limit'], lim['n_at_memory_limit']):,}: {lim['bites_first']}"
        )
    for side, probe in report["all_at_once"].items():
        outcome = f"done in {probe['cold_s']:.3f} s" if probe["completed"] else probe["failure"]
        console.print(f"{side}, all {report['sizes'][-1]} nodes at once: {outcome}")


def cmd_bench(args: argparse.Namespace) -> int:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    sizes = sorted(set(args.sizes))
    runs: dict[str, dict[str, FanoutSide]] = {}
    all_at_once: dict[str, FanoutAllAtOnce] = {}
    try:
        for turn, n in enumerate(sizes):
            try:
                runs[str(n)], probed = measure_size(n, turn, args, probe=n == sizes[-1])
                all_at_once.update(probed)
            except CliError as exc:
                raise CliError(f"N={n}: {exc}") from None
    except SshdUnavailableError as exc:
        raise CliError(str(exc)) from None
    report = build_report(sizes, runs, args, all_at_once)
    print_report(report, Console())
    for line in goals.describe(report["goals"]):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"saved {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "fanout_bench")
    parser.add_argument("--sizes", type=cli.positive_int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--warm-rounds", type=cli.positive_int, default=20)
    parser.add_argument(
        "--cold-runs", type=cli.positive_int, default=3, help="cold fan-outs per side and size"
    )
    parser.add_argument("--max-concurrency", type=cli.positive_int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a command may take")
    parser.add_argument("--json", type=Path, help="save the report here")
    parser.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
