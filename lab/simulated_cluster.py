"""Many simulated nodes on this machine, reachable both ways, and one run through each.

`SimulatedCluster` starts what a real cluster has, as real processes: one node agent per node
(each its own process, killable on its own), one OpenSSH sshd that every node's SSH side points
at, a journal collector, CurveZMQ keys for all of them, and a cluster descriptor with leaf
labels. `scheduled_run()` runs the three schedules through `build_ssh_context` or
`build_zmq_context`; `journal.comparable()` then compares the two journals record for record.

The coordination tests and the SSH-vs-ZeroMQ comparison both use it, and it rehearses a
migration's A/B run: the same schedules through both transports, both journals kept.

    python -m zcl_lab.simulated_cluster ab --nodes 8 --out ab-run/
    python -m zcl.journal compare ab-run/ssh-journal.jsonl ab-run/zmq-journal.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from cluster_patterns import processes
from zcl import cli, keys
from zcl.errors import CliError
from zcl.journal import FileJournalWriter, comparable, read_journal
from zcl.protocols import AsyncJournalWriterProtocol, ClusterDescriptor
from zcl.schedules import SCHEDULES, run_schedule
from zcl.ssh_context import build_ssh_context
from zcl.zmq_journal import ZmqJournalWriter
from zcl.zmq_operational_context import build_zmq_context
from zcl_lab import perftest
from zcl_lab.openssh_server import OpenSshServer, SshdUnavailableError
from zcl_tools.results import ScheduledRun

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by the SSH login user, unlike some venvs


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SimulatedCluster:
    def __init__(
        self,
        nodes: int = 16,
        leaves: int = 4,
        agent_args: Sequence[str] = (),
        start_timeout_s: float = 60.0,
        *,
        fixed_ports: bool = False,
    ) -> None:
        """`fixed_ports`: each agent binds a port chosen now and keeps it across restarts
        (`restart_agent`), as on a real node; otherwise each takes any free port."""
        self.node_ids = [f"node{n:02d}" for n in range(1, nodes + 1)]
        self.start_timeout_s = start_timeout_s
        self.leaves, self.agent_args = leaves, list(agent_args)
        self.sshd = OpenSshServer()
        self.roles = processes.Roles("zcl.agent.node_agent")
        self.dir = self.keydir = Path()
        self.agents: dict[str, processes.Child] = {}
        self.binds = {
            node: f"tcp://127.0.0.1:{free_port() if fixed_ports else '*'}" for node in self.node_ids
        }
        self.agent_specs: dict[str, list[str]] = {}

    def __enter__(self) -> SimulatedCluster:
        self.dir = Path(tempfile.mkdtemp(prefix="zcl-cluster-"))
        self.dir.chmod(0o755)  # the SSH login user reads the perf test from here
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        # The keys apart from self.dir, which the agents serve as their file root: an agent
        # refuses a root that holds its keys.
        self.keydir = Path(tempfile.mkdtemp(prefix="zcl-cluster-keys-"))
        keys.generate(self.keydir, nodes=[*self.node_ids, "collector"], controllers=["runner"])
        program = self.dir / "perftest.py"
        shutil.copy(perftest.__file__, program)
        program.chmod(0o644)
        python = SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else sys.executable
        self.perftest = f"{python} {program}"
        self.sshd.start()
        for node in self.node_ids:
            self.agent_specs[node] = [
                *("--bind", self.binds[node], "--keys", str(keys.node_dir(self.keydir, node))),
                *("--warm-shells", "1", "--file-root", str(self.dir), *self.agent_args),
            ]
        specs = [(node, self.agent_specs[node]) for node in self.node_ids]
        for node, child in zip(
            self.node_ids, self.roles.spawn_many(specs, timeout_s=self.start_timeout_s), strict=True
        ):
            self.agents[node] = child
        self.collector = self.roles.spawn(
            "collector",
            "--bind",
            "tcp://127.0.0.1:*",
            "--path",
            str(self.dir / "zmq-journal.jsonl"),
            "--keys",
            str(keys.node_dir(self.keydir, "collector")),
            module="zcl.journal_collector",
        )

    def restart_agent(self, node: str, stop: int = signal.SIGTERM) -> processes.Child:
        """Stop a node's agent with a real signal (SIGTERM drains), wait for it to end, start it
        again on the same endpoint, and return once the new one serves (fixed_ports only)."""
        if self.binds[node].endswith(":*"):
            raise ValueError("restart_agent needs SimulatedCluster(fixed_ports=True)")
        self.agents[node].kill(stop)
        self.agents[node] = self.roles.spawn(node, *self.agent_specs[node])
        return self.agents[node]

    def descriptor(self, transports: Mapping[str, str] | None = None) -> ClusterDescriptor:
        nodes = []
        for index, node in enumerate(self.node_ids):
            port = int(self.agents[node].endpoint.rsplit(":", 1)[1])
            nodes.append(
                self.sshd.node(
                    node,
                    agent_port=port,
                    labels={"leaf": f"L{index % self.leaves + 1}"},
                    transport=(transports or {}).get(node, "zmq"),
                )
            )
        return ClusterDescriptor(
            nodes=tuple(nodes), zmq_keys_dir=str(keys.controller_dir(self.keydir, "runner"))
        )

    def zmq_journal(self) -> ZmqJournalWriter:
        """A writer to this cluster's collector (make it inside the event loop)."""
        runner = keys.load_controller_keys(keys.controller_dir(self.keydir, "runner"))
        return ZmqJournalWriter(self.collector.endpoint, runner)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.roles.__exit__(exc_type, exc, tb)
        self.sshd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.keydir != Path():
            shutil.rmtree(self.keydir, ignore_errors=True)


async def scheduled_run(
    cluster: SimulatedCluster,
    transport: str,
    journal: AsyncJournalWriterProtocol,
    *,
    schedules: Sequence[str] = tuple(SCHEDULES),
    descriptor: ClusterDescriptor | None = None,
    **options: Any,
) -> float:
    """Every schedule through one transport's context; returns the wall time in seconds."""
    descriptor = descriptor or cluster.descriptor()
    build = build_ssh_context if transport == "ssh" else build_zmq_context
    started = time.monotonic()
    async with build(descriptor, None, journal, **options.pop("context", {})) as context:
        for schedule in schedules:
            await run_schedule(context, schedule, program=cluster.perftest, **options)
    return time.monotonic() - started


async def both_transports(cluster: SimulatedCluster, keep_in: Path | None = None) -> ScheduledRun:
    """The same scheduled run over SSH (file journal) and ZeroMQ (ZeroMQ journal), compared;
    `keep_in` is a folder to copy both journals to."""
    ssh_path = cluster.dir / "ssh-journal.jsonl"
    ssh_wall = await scheduled_run(cluster, "ssh", FileJournalWriter(ssh_path))
    zmq_wall = await scheduled_run(cluster, "zmq", cluster.zmq_journal())
    ssh_records = read_journal(ssh_path)
    zmq_records = read_journal(cluster.dir / "zmq-journal.jsonl")
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
        for name in ("ssh-journal.jsonl", "zmq-journal.jsonl"):
            shutil.copyfile(cluster.dir / name, keep_in / name)
    return {
        "nodes": len(cluster.node_ids),
        "schedules": list(SCHEDULES),
        "records": len(ssh_records),
        "ssh": {"wall_s": round(ssh_wall, 2)},
        "zmq": {"wall_s": round(zmq_wall, 2)},
        "journals_equal": comparable(ssh_records) == comparable(zmq_records) and bool(ssh_records),
    }


def cmd_ab(args: argparse.Namespace) -> int:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO
    try:
        with SimulatedCluster(nodes=args.nodes, leaves=args.leaves) as cluster:
            figures = asyncio.run(both_transports(cluster, keep_in=args.out))
    except SshdUnavailableError as exc:
        raise CliError(str(exc)) from None
    print(
        f"{figures['records']} records on {figures['nodes']} nodes: SSH "
        f"{figures['ssh']['wall_s']} s, ZeroMQ {figures['zmq']['wall_s']} s; journals in {args.out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = cli.command_parser(__doc__, "python -m zcl_lab.simulated_cluster")
    ab = cli.add_command(commands, "ab", cmd_ab, "one scheduled run through each transport")
    ab.add_argument("--nodes", type=cli.positive_int, default=8)
    ab.add_argument("--leaves", type=cli.positive_int, default=2)
    ab.add_argument("--out", type=Path, required=True, help="folder for the two journals")
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
