"""One controller's fan-out, in a process of its own so that its CPU seconds and peak memory
are its own: `true` on every node of a cluster descriptor through one transport's context and
its group run (`run_group`, what cluster_runner would call), first cold (from nothing: the
context built and every connection set up on the way), then warm (the same connections, again
and again). It prints one JSON line; a node that did not answer makes it fail, never a partial
figure.

    python -m zcl_lab.fanout_controller --descriptor cluster.json --side zmq
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zcl import cli
from zcl.errors import CliError, DescriptorError, ExecutorError
from zcl.journal import FileJournalWriter
from zcl.protocols import ClusterDescriptor, CommandResult
from zcl.ssh_context import build_ssh_context
from zcl.zmq_operational_context import build_zmq_context

SIDES = ("zmq", "ssh")
COMMAND = "true"


def incomplete(results: Mapping[str, CommandResult | ExecutorError]) -> list[str]:
    """Each node that did not give `true`'s result, with why: the gather was not whole."""
    missing = []
    for node, outcome in results.items():
        if isinstance(outcome, ExecutorError):
            missing.append(f"{outcome} ({type(outcome).__name__})")  # it names the node
        elif outcome.exit_status != 0:
            missing.append(f"{node}: exit status {outcome.exit_status}")
    return missing


def cpu_seconds() -> float:
    """This process's CPU time so far, every thread's (libzmq's I/O thread included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mib() -> float:
    """Resident memory now, MiB."""
    return _status_mib("VmRSS")


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) again from now: the imports' peak is not the fan-out's."""
    Path("/proc/self/clear_refs").write_text("5")  # Linux 4.0 and later


def peak_rss_mib() -> float:
    """The most resident memory since reset_peak_rss(), MiB."""
    return _status_mib("VmHWM")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def whole(side: str, results: Mapping[str, CommandResult | ExecutorError]) -> None:
    missing = incomplete(results)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CliError(
            f"{side} could not complete {len(results)} nodes: {len(missing)} failed, "
            f"first {missing[0]}{more}"
        )


async def fan_out(
    descriptor: ClusterDescriptor,
    side: str,
    warm_rounds: int,
    max_concurrency: int,
    timeout_s: float,
) -> dict[str, Any]:
    nodes = [node.node_id for node in descriptor.nodes]
    build = build_zmq_context if side == "zmq" else build_ssh_context
    with tempfile.TemporaryDirectory(prefix="zcl-fanout-") as scratch:
        journal = FileJournalWriter(Path(scratch) / "journal.jsonl")  # a group run writes none
        reset_peak_rss()
        baseline_mib, baseline_fds = rss_mib(), open_fds()
        cpu_before, started = cpu_seconds(), time.perf_counter()
        async with build(descriptor, None, journal) as context:
            results = await context.run_group(
                nodes, COMMAND, max_concurrency=max_concurrency, timeout_s=timeout_s
            )
            cold_s, cold_cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
            whole(side, results)
            cold_peak_mib, connected_fds = peak_rss_mib(), open_fds()
            gathers = []
            cpu_before = cpu_seconds()
            for _ in range(warm_rounds):
                started = time.perf_counter()
                results = await context.run_group(
                    nodes, COMMAND, max_concurrency=max_concurrency, timeout_s=timeout_s
                )
                gathers.append(time.perf_counter() - started)
                whole(side, results)
            warm_cpu = (cpu_seconds() - cpu_before) / warm_rounds
        await journal.close()
    ordered = sorted(gathers)
    return {
        "side": side,
        "nodes": len(nodes),
        "cold": {
            "wall_s": round(cold_s, 4),
            "cpu_s": round(cold_cpu, 4),
            "peak_rss_mib": round(cold_peak_mib, 1),
            "rss_growth_mib": round(cold_peak_mib - baseline_mib, 1),
        },
        "warm": {
            "p50_s": round(ordered[len(ordered) // 2], 4),
            "p99_s": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 4),
            "cpu_s_per_gather": round(warm_cpu, 4),
            "gathers": len(ordered),
        },
        "fds_per_node": round((connected_fds - baseline_fds) / len(nodes), 2),
    }


def cmd_fan_out(args: argparse.Namespace) -> int:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO
    try:
        descriptor = ClusterDescriptor.load(args.descriptor)
    except DescriptorError as exc:
        raise CliError(str(exc)) from None
    figures = asyncio.run(
        fan_out(descriptor, args.side, args.warm_rounds, args.max_concurrency, args.timeout)
    )
    print(json.dumps(figures))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "fanout_controller")
    parser.add_argument("--descriptor", type=Path, required=True, help="the cluster's JSON")
    parser.add_argument("--side", choices=SIDES, required=True, help="which transport")
    parser.add_argument("--warm-rounds", type=cli.positive_int, default=20)
    parser.add_argument("--max-concurrency", type=cli.positive_int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a command may take")
    parser.set_defaults(func=cmd_fan_out)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
