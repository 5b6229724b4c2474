"""The workload `docker/simulate-cluster.sh test` runs inside the cluster while it injects faults.

Two streams run side by side for `--duration` seconds (the tasks longer, until `--until-file`
exists, when given) and are then checked:
- step 02: waves of echo tasks through the coordinator to the nodes' workers; every task must
  come back exactly once (the client drops a second reply to the same correlation id);
- step 03: commands on every node through its agent, each result journalled through the
  ZeroMQ journal collector; a command a fault cut off is tried again once the node answers,
  and every planned record must be in the collector's journal exactly once.

With `--fallback` (the rollback drill, `simulate-cluster.sh drill`) each node's commands go
through the fallback executor: ZeroMQ first, SSH (user zcl, the cluster's key) when the node's
ZeroMQ circuit is open or a ZeroMQ attempt fails in transport. Every journal record says which
transport served it, and the summary counts them.

With `--strict` (the rolling restart, `simulate-cluster.sh rolling-restart`) nothing is tried
again: a command that fails is a failure of the run. Each command leaves a file named after
its record in the user's home on the node, made by whichever transport ran it, and the files
are counted at the end, so a command that ran twice shows as two. The summary gives each
command's wall time, the slowest included: what a restart cost a running call.

It prints one JSON summary and a verdict line, PASS or FAIL with the reason, and exits 0 only on
PASS. It fails loudly when nothing succeeded at all.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from cluster_patterns.client import MdpClient
from zcl import cli, curve, keys
from zcl.errors import ExecutorError
from zcl.executor_options import SshExecutorOptions, ZmqExecutorOptions
from zcl.fallback import FallbackExecutor
from zcl.journal import read_journal
from zcl.protocols import NodeExecutorProtocol
from zcl.ssh_context import NodeExecutorSSH
from zcl.zmq_journal import ZmqJournalWriter
from zcl.zmq_node_executor import ZmqNodeExecutor

UNTIL_FILE_LIMIT_S = 120.0


def ssh_executor(node: str, key: Path, persistent: bool = True) -> NodeExecutorSSH:
    """A node of the Docker cluster over SSH: user zcl, with the cluster's key (node-init.sh).

    The lab's nodes make new host keys at every start, so there is nothing to pin: the check
    is skipped by name, here only.
    """
    return NodeExecutorSSH(
        node,
        node,
        username="zcl",
        client_key=str(key),
        skip_host_key_check=True,
        options=SshExecutorOptions(persistent=persistent),
    )


def tasks_through_the_coordinator(
    endpoint: str,
    duration_s: float,
    wave: int,
    until: Path | None = None,
    keys: curve.ControllerKeys | None = None,
    *,
    rate: float = 100.0,
) -> dict[str, Any]:
    """Waves of tasks for `duration_s`, then on until the file `until` exists: the script
    injecting faults creates it once they are over, so the load outlasts them however long a
    loaded machine takes to inject them (bounded, so a lost signal cannot hang the run).

    At most `rate` tasks a second: every task is three events on the coordinator's feed, and
    unpaced waves (400 tasks a second seen) put the monitor, whose log the script reads for
    its verdicts, more than a minute behind."""
    completed = submitted = missing = duplicates = errors = 0
    started = time.monotonic()
    deadline = started + duration_s
    last_call = deadline + UNTIL_FILE_LIMIT_S

    def going_on() -> bool:
        now = time.monotonic()
        if now < deadline:
            return True
        return until is not None and now < last_call and not until.exists()

    with zmq.Context() as ctx:
        client = MdpClient(ctx, endpoint, timeout_s=3.0, retries=10, keys=keys)
        try:
            while going_on():
                report = client.batch(b"echo", [[b"task"]] * wave, in_flight=8)
                submitted += report.submitted
                completed += len(report.outcomes)
                missing += len(report.missing)
                duplicates += report.duplicates
                errors += sum(1 for o in report.outcomes.values() if o.error)
                ahead = started + submitted / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the load, not waiting for anything
        finally:
            client.close()
    return {
        "submitted": submitted,
        "completed": completed,
        "missing": missing,
        "errors": errors,
        "duplicate_replies_dropped": duplicates,
    }


async def commands_through_the_agents(args: argparse.Namespace) -> dict[str, Any]:
    controller = keys.load_controller_keys(args.keys)
    nodes = args.nodes.split(",")
    executors = node_executors(args, nodes, controller)
    served: collections.Counter[str] = collections.Counter()
    journal = ZmqJournalWriter(args.collector, controller)
    run_id = uuid.uuid4().hex[:8]  # the journal outlives runs: each run's records are its own
    planned = [f"{run_id}:{node}:{n}" for n in range(args.commands) for node in nodes]
    retried = 0
    failed: list[str] = []
    took: list[float] = []

    async def one(record_id: str) -> None:
        nonlocal retried
        node = record_id.split(":")[1]
        give_up = time.monotonic() + args.duration + 120
        command = traced(record_id, args.runs_dir) if args.strict else f"echo {record_id}"
        while True:
            began = time.monotonic()
            try:
                # Strict: a trace that could not be written is a failure, not a run.
                result = await executors[node].run(command, timeout_s=10, check=args.strict)
                took.append(time.monotonic() - began)
                break
            except ExecutorError as exc:
                if args.strict:
                    failed.append(f"{record_id}: {exc}")
                    return
                retried += 1
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.5)  # the node is down or cut off: try again shortly
        served[f"{node} {result.transport}"] += 1
        await journal.write(
            {
                "record_id": record_id,
                "node": node,
                "out": result.text().strip(),
                "transport": result.transport,
            }
        )

    try:
        started = time.monotonic()
        pace = args.duration / max(args.commands, 1)
        for n in range(args.commands):  # spread over the run, so faults hit some of them
            await asyncio.gather(*(one(f"{run_id}:{node}:{n}") for node in nodes))
            await asyncio.sleep(max(0.0, started + (n + 1) * pace - time.monotonic()))
        await journal.close()
        runs = await runs_on_nodes(executors, run_id, args.runs_dir) if args.strict else None
    finally:
        for executor in executors.values():
            await executor.close()
    journalled = [r for r in read_journal(args.journal) if str(r["record_id"]).startswith(run_id)]
    counts = collections.Counter(r["record_id"] for r in journalled)
    summary = journal_summary(planned, counts, retried, served)
    if took:
        took.sort()
        summary["wall_s"] = {"p50": round(took[len(took) // 2], 4), "max": round(took[-1], 4)}
    if runs is not None:
        summary.update(strict_counts(planned, counts, runs, failed, journalled))
    return summary


def strict_counts(
    planned: list[str],
    counts: collections.Counter[str],
    runs: collections.Counter[str],
    failed: list[str],
    journalled: list[dict[str, Any]],
) -> dict[str, Any]:
    """--strict's verdict figures, with the records that never ran as the journal has them
    (which transport said it served them), for whoever looks next."""
    return {
        "failed": failed[:10],
        "failed_count": len(failed),
        "ran_twice": sum(1 for r in planned if runs[r] > 1),
        "never_ran": sum(1 for r in planned if runs[r] == 0 and counts[r]),
        "never_ran_records": [r for r in journalled if runs[r["record_id"]] == 0][:10],
    }


def node_executors(
    args: argparse.Namespace, nodes: list[str], controller: keys.ControllerKeys
) -> dict[str, NodeExecutorProtocol]:
    executors: dict[str, NodeExecutorProtocol] = {}
    for node in nodes:
        over_zmq = ZmqNodeExecutor(
            node,
            f"tcp://{node}:5560",
            controller,
            options=ZmqExecutorOptions(agent_silence_s=1.0),
        )
        executors[node] = (
            FallbackExecutor(over_zmq, ssh_executor(node, args.ssh_key))
            if args.fallback
            else over_zmq
        )
    return executors


def journal_summary(
    planned: list[str],
    counts: collections.Counter[str],
    retried: int,
    served: collections.Counter[str],
) -> dict[str, Any]:
    return {
        "planned": len(planned),
        "in_journal": sum(1 for r in planned if counts[r] == 1),
        "missing": sum(1 for r in planned if counts[r] == 0),
        "doubled": sum(1 for r in planned if counts[r] > 1),
        "retried": retried,
        "served": dict(sorted(served.items())),
    }


# Where the commands' traces go in --strict: below the node user's home, or a folder every
# transport's user may write (--runs-dir: a deployed agent runs commands as its own user).
RUNS = "$HOME/zcl-runs"


def traced(record_id: str, runs: str = RUNS) -> str:
    """The command, leaving a trace of every run, by whichever transport ran it."""
    return f'mkdir -p "{runs}" && touch "{runs}/{record_id}.$$" && echo {record_id}'


async def runs_on_nodes(
    executors: dict[str, NodeExecutorProtocol], run_id: str, runs: str = RUNS
) -> collections.Counter[str]:
    """How many times each record's command ran, from the traces it left; then removes them."""
    found: collections.Counter[str] = collections.Counter()
    for executor in executors.values():
        listing = await executor.run(
            f'ls "{runs}" 2>/dev/null; rm -f "{runs}"/{run_id}:*', timeout_s=30
        )
        for name in listing.text().split():
            if name.startswith(f"{run_id}:"):
                found[name.rsplit(".", 1)[0]] += 1
    return found


def verdict(summary: dict[str, Any]) -> str | None:
    tasks, commands = summary["tasks"], summary["commands"]
    if tasks["completed"] == 0 or commands["in_journal"] == 0:
        return "nothing succeeded"
    if tasks["missing"] or tasks["errors"] or tasks["completed"] != tasks["submitted"]:
        return f"tasks lost or failed: {tasks}"
    if commands["missing"] or commands["doubled"]:
        return f"journal records lost or doubled: {commands}"
    if commands.get("failed_count") or commands.get("ran_twice") or commands.get("never_ran"):
        return f"commands failed, ran twice or never ran: {commands}"
    node, served = summary.get("expect_fallback"), commands["served"]
    if node and not (served.get(f"{node} ssh") and served.get(f"{node} zmq")):
        return f"{node} was not served over ZeroMQ and, while its agent was down, SSH: {commands}"
    return None


def run(args: argparse.Namespace) -> int:
    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        mdp_keys = curve.load_controller_keys(args.mdp_keys)
        tasks = asyncio.to_thread(
            functools.partial(tasks_through_the_coordinator, rate=args.rate),
            args.coordinator,
            args.duration,
            args.wave,
            args.until,
            mdp_keys,
        )
        return await asyncio.gather(tasks, commands_through_the_agents(args))

    tasks, commands = asyncio.run(both())
    summary = {"tasks": tasks, "commands": commands, "expect_fallback": args.expect_fallback}
    print(json.dumps(summary, sort_keys=True))
    problem = verdict(summary)
    print("FAIL: " + problem if problem else "PASS: every task once, every record once")
    return 1 if problem else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__)
    parser.prog = "python -m zcl_lab.cluster_workload"
    parser.add_argument("--nodes", required=True, help="comma-separated node host names")
    cli.add_endpoint(parser, "--coordinator", "COORDINATOR_ENDPOINT", "tcp://coordinator:5555")
    cli.add_endpoint(parser, "--collector", "ZCL_COLLECTOR", "tcp://collector:5570")
    parser.add_argument("--keys", type=Path, default=Path("/keys/controllers/runner"))
    parser.add_argument("--ssh-key", type=Path, default=Path("/keys/ssh/id_ed25519"))
    parser.add_argument(
        "--mdp-keys",
        type=Path,
        default=Path("/keys/mdp/controllers/runner"),
        help="the client's keys for the coordinator's own key domain",
    )
    parser.add_argument(
        "--fallback", action="store_true", help="ZeroMQ first, SSH when a node's ZeroMQ fails"
    )
    parser.add_argument(
        "--expect-fallback", metavar="NODE", help="fail unless NODE was served over both"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="no command is tried again, and each must have run exactly once (rolling restart)",
    )
    parser.add_argument(
        "--runs-dir", default=RUNS, metavar="DIR", help=f"where --strict's traces go ({RUNS})"
    )
    parser.add_argument("--journal", type=Path, default=Path("/events/journal.jsonl"))
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--commands", type=cli.positive_int, default=40, help="per node")
    parser.add_argument(
        "--until-file",
        dest="until",
        type=Path,
        help="after --duration, keep the tasks going until this file exists "
        f"(at most {UNTIL_FILE_LIMIT_S:g} s more)",
    )
    parser.add_argument("--wave", type=cli.positive_int, default=20, help="tasks per batch")
    parser.add_argument(
        "--rate", type=cli.positive_int, default=100, help="most tasks a second (default 100)"
    )
    parser.set_defaults(func=run)
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
