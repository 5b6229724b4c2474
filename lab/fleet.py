"""The deployment rehearsal's glue: the Docker cluster seen as a fleet that Ansible deploys to.

`simulate-cluster.sh start --bare` runs the nodes and the collector host as bare hosts (systemd,
sshd, no agent: docker/bare/) with the Compose override this module writes; `deploy`, `rotate`
and `remove` then run the playbooks of integration-plan/deploy against them, over SSH, with an
inventory and a known_hosts file this module makes from the running containers (found by their
Compose labels through the Docker SDK), so Ansible checks every host key as it would on a fleet.

    python -m zcl_lab.fleet compose-bare --workers 3 --out docker/.build/bare.yml
    python -m zcl_lab.fleet inventory --project zcl --build docker/.build
    python -m zcl_lab.fleet recap ansible-output.txt   # "changed" per host, as JSON
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zcl import cli
from zcl.errors import CliError
from zcl_lab import docker_api

BARE_IMAGE = "zcl-bare:latest"
NODE_ROLE, COLLECTOR = "node", "collector"
# What systemd as init needs of Docker on this kernel (cgroup v1, seen here): the cgroup
# hierarchy, tmpfs for /run, SYS_ADMIN for the units' mount namespaces (ProtectSystem=...).
SYSTEMD_IN_DOCKER: dict[str, Any] = {
    "image": BARE_IMAGE,
    "command": ["--unit=multi-user.target"],
    "tmpfs": ["/run", "/run/lock"],
    "cap_add": ["NET_ADMIN", "SYS_ADMIN"],
    "stop_signal": "SIGRTMIN+3",
}
CGROUP_MOUNT = "/sys/fs/cgroup:/sys/fs/cgroup:ro"
RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")  # fmt: skip


def bare_override(workers: Sequence[str], build: Path) -> dict[str, Any]:
    """The Compose override that turns the nodes and the collector host into bare hosts."""
    services: dict[str, Any] = {}
    for node in workers:
        services[node] = dict(
            SYSTEMD_IN_DOCKER,
            volumes=[f"{build}/mounts/{node}:/keys:ro", CGROUP_MOUNT],
            healthcheck=_healthcheck("systemctl is-active --quiet ssh zcl-lab-worker"),
        )
    services[COLLECTOR] = dict(
        SYSTEMD_IN_DOCKER,
        volumes=[f"{build}/mounts/{COLLECTOR}:/keys:ro", f"{build}/events:/events", CGROUP_MOUNT],
        healthcheck=_healthcheck("systemctl is-active --quiet ssh"),
    )
    return {"services": services}


def _healthcheck(test: str) -> dict[str, Any]:
    return {"test": ["CMD-SHELL", test], "interval": "2s", "timeout": "2s", "retries": 30}


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    host_key: str  # "ssh-ed25519 AAAA..." as the host's sshd offers it


def fleet_hosts(project: str) -> dict[str, list[Host]]:
    """The running cluster's nodes and collector host, by their Compose labels."""
    found: dict[str, list[Host]] = {"zcl_agents": [], "zcl_collectors": []}
    for container in docker_api.containers(project):
        service = docker_api.service_of(container)
        role = container.labels.get("zcl.role")
        if role == NODE_ROLE:
            group = "zcl_agents"
        elif service == COLLECTOR:
            group = "zcl_collectors"
        else:
            continue
        networks = container.attrs["NetworkSettings"]["Networks"]
        address = next(iter(networks.values()))["IPAddress"]
        code, key = container.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        if code != 0:
            raise CliError(f"{service} has no SSH host key yet (is it a bare node? start --bare)")
        fields = key.decode().split()
        found[group].append(Host(service, address, f"{fields[0]} {fields[1]}"))
    if not found["zcl_agents"] or not found["zcl_collectors"]:
        raise CliError(f"no running bare cluster in project {project!r} (start --bare)")
    return found


def locked_memory_limit(project: str) -> str:
    """The most locked memory a node's systemd may grant, for LimitMEMLOCK=: a container's
    hard limit (its systemd has no CAP_SYS_RESOURCE to raise it to the role's infinity, and
    Docker here refuses to give it one), in bytes; "infinity" where it is unlimited."""
    for container in docker_api.containers(project):
        if container.labels.get("zcl.role") == NODE_ROLE:
            code, out = container.exec_run(["sh", "-c", "ulimit -Hl"])
            text = out.decode().strip()
            if code == 0 and text.isdigit():
                return str(int(text) * 1024)
            return "infinity"
    raise CliError(f"no running bare cluster in project {project!r} (start --bare)")


def inventory(groups: Mapping[str, Sequence[Host]], variables: Mapping[str, str]) -> str:
    lines = []
    for group, hosts in groups.items():
        lines.append(f"[{group}]")
        lines.extend(f"{host.name} ansible_host={host.address}" for host in hosts)
        lines.append("")
    lines.append("[all:vars]")
    lines.extend(f"{name}={value}" for name, value in variables.items())
    return "\n".join(lines) + "\n"


def known_hosts(groups: Mapping[str, Sequence[Host]]) -> str:
    return "".join(f"{h.address} {h.host_key}\n" for hosts in groups.values() for h in hosts)


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook's output: per host, ok, changed, unreachable, failed."""
    found = {}
    for line in output.splitlines():
        match = RECAP.match(line.strip())
        if match:
            counts = {k: int(v) for k, v in match.groupdict().items() if k != "host"}
            found[match["host"]] = counts
    return found


def _cmd_compose_bare(args: argparse.Namespace) -> int:
    workers = [f"worker{n}" for n in range(1, args.workers + 1)]
    override = bare_override(workers, args.out.parent.resolve())
    args.out.write_text(json.dumps(override, indent=2) + "\n")  # JSON is YAML too
    return 0


def write_inventory(project: str, build: Path, controller: str) -> list[str]:
    """inventory.ini and known_hosts in the build folder, from the running cluster; the hosts'
    names."""
    groups = fleet_hosts(project)
    build = build.resolve()
    (build / "known_hosts").write_text(known_hosts(groups))
    variables = {
        "ansible_user": "ops",
        "ansible_ssh_private_key_file": str(build / "keys" / "ssh" / "id_ed25519"),
        # The hosts' keys were read from the containers: Ansible checks them, as on a fleet.
        "ansible_ssh_common_args": (
            f"'-o UserKnownHostsFile={build / 'known_hosts'} -o StrictHostKeyChecking=yes"
            " -o ControlMaster=no'"
        ),
        "zcl_keys_dir": str(build / "keys"),
        "zcl_wheelhouse": str(build / "wheelhouse"),
        "zcl_controller": controller,
        # The workloads read the journal from the shared events folder.
        "zcl_collector_journal": "/events/journal.jsonl",
        "zcl_agent_memlock": locked_memory_limit(project),
        # The upgrade rehearsal's traces (docker/bare/lab-node-setup makes the folder).
        "zcl_agent_file_roots": "['/var/lib/zcl-agent', '/srv/zcl-runs']",
    }
    (build / "inventory.ini").write_text(inventory(groups, variables))
    return [host.name for hosts in groups.values() for host in hosts]


def _cmd_inventory(args: argparse.Namespace) -> int:
    names = write_inventory(args.project, args.build, args.controller)
    print(f"inventory: {' '.join(names)}")
    return 0


def _cmd_recap(args: argparse.Namespace) -> int:
    found = recap(args.output.read_text())
    if not found:
        raise CliError(f"{args.output}: no PLAY RECAP in it")
    print(json.dumps(found, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "fleet")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    bare = verbs.add_parser("compose-bare", help="the Compose override for bare hosts")
    bare.add_argument("--workers", type=cli.positive_int, required=True)
    bare.add_argument("--out", type=Path, required=True)
    bare.set_defaults(func=_cmd_compose_bare)
    inv = verbs.add_parser("inventory", help="inventory.ini and known_hosts from the cluster")
    inv.add_argument("--project", required=True, help="the Compose project name")
    inv.add_argument("--build", type=Path, required=True, help="docker/.build")
    inv.add_argument("--controller", default="runner", help="the controller key in use")
    inv.set_defaults(func=_cmd_inventory)
    rec = verbs.add_parser("recap", help="ansible-playbook's PLAY RECAP as JSON")
    rec.add_argument("output", type=Path)
    rec.set_defaults(func=_cmd_recap)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
