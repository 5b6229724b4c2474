"""`simulate-cluster.sh status`: every service of the Docker cluster, its state, its health and
the faults in force, as a table for people or as JSON for scripts (`--json`).

Services are found by their Compose labels through the Docker SDK; a running node's faults
are read inside it (the chains zcl_lab.faults makes, and whether its agent runs).

    python -m zcl_lab.cluster_status --project zcl --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zcl import cli
from zcl.errors import CliError
from zcl_lab import docker_api, faults

PROBES = {  # a node's fault -> the command that succeeds inside it while the fault is in force
    "partitioned": ["iptables", "-S", faults.PARTITION],
    "flaky": ["iptables", "-S", faults.FLAKY],
    "slow": ["iptables", "-t", "nat", "-S", faults.SLOW],
}


@dataclass(frozen=True)
class Service:
    service: str
    role: str  # the zcl.role label: node, coordinator, monitor, collector ...
    state: str  # Docker's: running, exited, paused ...
    health: str  # healthy, unhealthy, starting, or "-" without a health check
    faults: tuple[str, ...]  # "failed", "paused", "agent-down", "partitioned", "flaky", "slow"


def node_faults(container: Any) -> tuple[str, ...]:
    found = []
    # "[z]" keeps the pattern from matching a command line that holds it (a health check's).
    if container.exec_run(["pgrep", "-f", "[z]cl-agent"]).exit_code != 0:
        found.append("agent-down")
    for fault, probe in PROBES.items():
        if container.exec_run(probe).exit_code == 0:
            found.append(fault)
    return tuple(found)


def cluster(project: str) -> list[Service]:
    found = []
    for container in docker_api.containers(project, stopped_too=True):
        state = container.attrs["State"]
        health = state.get("Health", {}).get("Status", "-")
        status = state["Status"]
        in_force: tuple[str, ...] = ()
        if status == "exited":
            in_force = ("failed",)
        elif status == "paused":
            in_force = ("paused",)
        elif status == "running" and container.labels.get("zcl.role") == "node":
            in_force = node_faults(container)
        role = str(container.labels.get("zcl.role", "-"))
        found.append(Service(docker_api.service_of(container), role, status, health, in_force))
    return found


def table(services: Sequence[Service]) -> str:
    lines = [f"{'SERVICE':<12} {'STATE':<10} {'HEALTH':<10} FAULT"]
    for s in services:
        lines.append(f"{s.service:<12} {s.state:<10} {s.health:<10} {','.join(s.faults) or '-'}")
    return "\n".join(lines)


def clean_nodes(services: Sequence[Service], verb: str) -> list[str]:
    """The nodes a workload may use: 2 or more, every one running with no fault in force;
    otherwise CliError saying what to do first."""
    nodes = [s for s in services if s.role == "node"]
    if len(nodes) < 2:
        raise CliError(f"{verb} needs a running cluster of 2 nodes or more (start)")
    for node in nodes:
        if node.state != "running":
            raise CliError(
                f"{node.service} is not running: recover or resume it first (see status)"
            )
        if node.faults:
            raise CliError(f"{node.service} has a fault in force: heal or fast it first")
    return [node.service for node in nodes]


def render(services: Sequence[Service], *, as_json: bool) -> str:
    """The table for people, or a JSON list (one object a service) for scripts."""
    if as_json:
        return json.dumps([asdict(s) for s in services], indent=1)
    return table(services) if services else "simulate-cluster.sh: no cluster (run start)"


def _cmd_status(args: argparse.Namespace) -> int:
    print(render(cluster(args.project), as_json=args.json))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "simulate-cluster.sh")
    parser.add_argument("--project", required=True, help="the Compose project name")
    parser.add_argument("--json", action="store_true", help="a JSON list, one object a service")
    parser.set_defaults(func=_cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
