"""zcl-run: a command on many nodes at once, through their agents, as pdsh and clush do it.

    zcl-run -c cluster.json -w 'node[01-64],gpu-a[1-8]' nvidia-smi -L
    zcl-run -c cluster.json -g leaf:L1 -x gpu03 -b 'uname -r'       (clush -b: outputs folded)
    zcl-run -c cluster.json -a --json 'df -h /scratch' > df.json
    zcl-run -c cluster.json -w 'node[1-8]' --copy ./job.sh /tmp/job.sh

Nodes are named in ClusterShell's notation (ranges, padding, `,` `!` `&` `^`; zcl.nodeset)
and looked up in the cluster descriptor (-c, or $ZCL_CLUSTER), whose labels are the groups:
`-g leaf:L1` is every node whose label `leaf` is `L1`, `@leaf:L1` the same inside -w.

Each node's output is printed as it finishes, every line after `node: ` (stdout to stdout,
stderr to stderr), or with -b gathered at the end, identical outputs under one node set. A
node that fails is named on stderr. The exit status is the worst of the nodes': a command's
own, 124 for one that ran over -t, 255 for a node that could not run it (pdsh -S's rule).
On a terminal a progress line counts what is done; Ctrl-C kills every remote command still
running and exits 130.

The commands go over CurveZMQ with the descriptor's zmq_keys_dir (or --keys), at most
-f at once; a node whose transport is "ssh" goes over SSH (the ssh extra).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq

from zcl import cli
from zcl.errors import CliError, CommandTimeoutError, ExecutorError, ZclError
from zcl.executor_base import NodeExecutorBase
from zcl.fleet_outcomes import Outcome, as_json, gathered, prefixed, progress_line, worst
from zcl.keys import ControllerKeys, load_controller_keys
from zcl.nodeset import expand, fold, label_groups
from zcl.protocols import ClusterDescriptor, NodeDescriptor
from zcl.zmq_node_executor import ZmqNodeExecutor
from zcl.zmq_operational_context import room_for, ssh_executor

INTERRUPTED = 130
DEFAULT_FANOUT = 64


def chosen_nodes(args: argparse.Namespace, descriptor: ClusterDescriptor) -> list[NodeDescriptor]:
    """The nodes -w, -g, -a and -x name, each of which the descriptor must know."""
    groups = label_groups({node.node_id: node.labels for node in descriptor.nodes})
    wanted = list(args.nodes or []) + [f"@{group}" for group in args.groups or []]
    if args.all:
        wanted.append(",".join(node.node_id for node in descriptor.nodes))
    if not wanted:
        raise CliError("name the nodes: -w NODESET, -g GROUP or -a (all)")
    expression = ",".join(wanted)
    for excluded in args.exclude or []:
        expression += f"!{excluded}"
    names = expand(expression, groups)
    known = {node.node_id: node for node in descriptor.nodes}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CliError(f"not in the cluster descriptor: {fold(unknown)}")
    if not names:
        raise CliError(f"{expression!r} leaves no node")
    return [known[name] for name in names]


def controller_keys(
    args: argparse.Namespace, descriptor: ClusterDescriptor, nodes: list[NodeDescriptor]
) -> ControllerKeys | None:
    over_zmq = [node for node in nodes if node.transport == "zmq"]
    folder = args.keys or (descriptor.zmq_keys_dir and Path(descriptor.zmq_keys_dir))
    if not over_zmq or args.insecure:
        return None
    if not folder:
        raise CliError("no controller keys: give --keys, or zmq_keys_dir in the descriptor")
    keys = load_controller_keys(Path(folder))
    unpinned = [node.node_id for node in over_zmq if node.node_id not in keys.known_hosts]
    if unpinned:
        raise CliError(f"no pinned key in {folder}/known_hosts for {fold(unpinned)}")
    return keys


class Fleet:
    """One executor per node, made as the node's turn comes, all on one ZeroMQ context."""

    def __init__(self, keys: ControllerKeys | None, nodes: list[NodeDescriptor]) -> None:
        self.keys, self.ctx = keys, zmq.Context()
        room_for(sum(node.transport == "zmq" for node in nodes), self.ctx, raise_open_files=True)

    def executor(self, node: NodeDescriptor) -> NodeExecutorBase:
        if node.transport == "ssh":
            return ssh_executor(node)  # asyncssh is imported only here
        return ZmqNodeExecutor(node.node_id, node.agent_endpoint, self.keys, ctx=self.ctx)

    def close(self) -> None:
        self.ctx.term()  # waits for the cancels still queued (each link lingers half a second)


Task = Callable[[NodeExecutorBase], Any]


async def on_node(fleet: Fleet, node: NodeDescriptor, task: Task) -> Outcome:
    started = time.monotonic()
    executor = fleet.executor(node)
    try:
        result = await task(executor)
    except CommandTimeoutError as exc:
        return Outcome(node.node_id, None, exc.stdout, exc.stderr, exc.message, timed_out=True)
    except ExecutorError as exc:
        return Outcome(node.node_id, error=exc.message)
    finally:
        await executor.close()  # on a Ctrl-C too: the cancel it sent goes out as it closes
    elapsed = time.monotonic() - started
    if result is None:  # a copy: nothing to print
        return Outcome(node.node_id, 0, duration_s=elapsed)
    return Outcome(node.node_id, result.exit_status, result.stdout, result.stderr,
                   duration_s=elapsed)  # fmt: skip


class Reporter:
    """Prints each outcome as it comes (unless gathering), and the progress line on a tty."""

    def __init__(self, total: int, *, gather: bool, quiet: bool) -> None:
        self.total, self.gather = total, gather
        self.done = self.failed = 0
        self.progress = sys.stderr.isatty() and not quiet

    def __call__(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += outcome.failed
        self._clear()
        if not self.gather:
            sys.stdout.write(prefixed(outcome.stdout, outcome.node))
            sys.stdout.flush()
            sys.stderr.write(prefixed(outcome.stderr, outcome.node))
        note = outcome.note()
        if note is not None:
            print(f"zcl-run: {note}", file=sys.stderr)
        if self.progress and self.done < self.total:
            sys.stderr.write(progress_line(self.done, self.total, self.failed))
        sys.stderr.flush()

    def _clear(self) -> None:
        if self.progress:
            sys.stderr.write("\r\x1b[K")


async def fan_out(
    fleet: Fleet, nodes: list[NodeDescriptor], task: Task, fanout: int, report: Reporter | None
) -> list[Outcome]:
    slots = asyncio.Semaphore(fanout)

    async def one(node: NodeDescriptor) -> Outcome:
        async with slots:
            outcome = await on_node(fleet, node, task)
        if report is not None:
            report(outcome)
        return outcome

    # A Ctrl-C cancels this gather, and with it every call: each executor cancels its
    # command on the node (its process group killed) before its socket closes.
    return list(await asyncio.gather(*(one(node) for node in nodes)))


def _task(args: argparse.Namespace) -> tuple[str, Task]:
    if args.copy:
        source, destination = args.copy
        if not os.path.exists(source):
            raise CliError(f"--copy {source}: no such file or folder")

        async def copy(executor: NodeExecutorBase) -> None:
            await executor.put_file(Path(source), destination, preserve_mode=True)

        return f"copy {source} {destination}", copy
    if not args.command:
        raise CliError("give a command to run (or --copy SRC DEST)")
    command = args.command[0] if len(args.command) == 1 else shlex.join(args.command)
    timeout = args.timeout

    async def run(executor: NodeExecutorBase) -> Any:
        return await executor.run(command, timeout_s=timeout)

    return command, run


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.cluster:
        raise CliError("give the cluster descriptor: -c PATH, or $ZCL_CLUSTER")
    descriptor = ClusterDescriptor.load(Path(args.cluster))
    nodes = chosen_nodes(args, descriptor)
    if args.list:
        print(fold(node.node_id for node in nodes) if args.fold else "\n".join(
            node.node_id for node in nodes))  # fmt: skip
        return 0
    what, task = _task(args)
    keys = controller_keys(args, descriptor, nodes)
    report = None if args.json else Reporter(len(nodes), gather=args.gather, quiet=args.quiet)
    fleet = Fleet(keys, nodes)
    try:
        outcomes = asyncio.run(fan_out(fleet, nodes, task, args.fanout, report))
    except KeyboardInterrupt:
        print("\nzcl-run: interrupted: commands still running were killed", file=sys.stderr)
        return INTERRUPTED
    finally:
        fleet.close()
    if args.json:
        print(as_json(outcomes, what))
    elif args.gather:
        sys.stdout.write(gathered(outcomes))
    return worst(outcomes)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "zcl-run")
    parser.add_argument(
        "-c", "--cluster", default=os.environ.get("ZCL_CLUSTER"), metavar="PATH",
        help="the cluster descriptor (JSON; default $ZCL_CLUSTER)",
    )  # fmt: skip
    parser.add_argument("-w", dest="nodes", action="append", metavar="NODESET",
                        help="nodes, e.g. 'node[01-64],gpu-a[1-8]' (repeatable)")  # fmt: skip
    parser.add_argument("-g", dest="groups", action="append", metavar="GROUP",
                        help="a group from the descriptor's labels: KEY or KEY:VALUE")  # fmt: skip
    parser.add_argument("-x", dest="exclude", action="append", metavar="NODESET",
                        help="nodes left out (repeatable)")  # fmt: skip
    parser.add_argument("-a", "--all", action="store_true", help="every node of the descriptor")
    parser.add_argument(
        "-f", "--fanout", type=cli.positive_int, default=DEFAULT_FANOUT,
        help=f"commands in flight at once (default {DEFAULT_FANOUT})",
    )  # fmt: skip
    parser.add_argument("-t", "--timeout", type=cli.positive_seconds, metavar="S",
                        help="kill a node's command after this long (exit 124)")  # fmt: skip
    parser.add_argument("-b", dest="gather", action="store_true",
                        help="gather the outputs, identical ones folded (clush -b)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON report, for scripts")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    parser.add_argument("--copy", nargs=2, metavar=("SRC", "DEST"),
                        help="copy a file or folder to every node instead")  # fmt: skip
    parser.add_argument("--list", action="store_true",
                        help="print the nodes named, one a line, and exit")  # fmt: skip
    parser.add_argument("--fold", action="store_true", help="with --list: as one node set")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="the controller's key folder (default: zmq_keys_dir)")  # fmt: skip
    parser.add_argument("--insecure", action="store_true",
                        help="agents started with --insecure (tests and demos)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="the library's log too")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command and its words")
    parser.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every node's failure is said once, by its outcome: the library's own warnings would say
    # it again, and stdout is the nodes' (or the JSON report's) alone.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="zcl-run: %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ZclError as exc:  # a CliError, a bad node set, a descriptor, a key file
        print(f"zcl-run: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
