"""zcl-run against the parallel shells operators use today: pdsh, ClusterShell's clush and
Ansible ad hoc, each running `true` on the same N nodes.

The nodes are zcl_lab.simulated_cluster's: N agents, each its own process, and one real
sshd that every node name reaches through an ssh_config written here (`Host node*`). Every
OpenSSH peer uses curve25519-sha256 for its key exchange and opens one connection per node
(no ControlMaster; Ansible pipelines its module into that one connection). Each figure is one
whole process, cold, as an operator's shell runs it: start, connect, run, gather, exit; the
tools take turns, so that a noisy moment is not charged to one of them, and each figure is the
median of --repeats runs. A run that does not succeed on every node is counted as a failure
and gets no time.

    python -m zcl_lab.fleet_shell_bench --json results/bench-fleet-shell.json   (make bench)
    python -m zcl_lab.fleet_shell_bench --sizes 4 --repeats 1                   (a quick look)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from zcl import cli
from zcl.errors import CliError
from zcl.nodeset import fold
from zcl_lab.openssh_server import OpenSshServer
from zcl_lab.simulated_cluster import SimulatedCluster
from zcl_tools import goals
from zcl_tools.results import BenchFleetShell, ShellRun

DEFAULT_SIZES = (16, 64, 256)
FANOUT = 64
PEERS = ("pdsh", "clush", "ansible")
TOOLS = ("zcl-run", *PEERS)
RUN_TIMEOUT_S = 300.0


def ssh_config(sshd: OpenSshServer, folder: Path) -> Path:
    path = folder / "ssh_config"
    path.write_text(
        "Host node*\n"
        "  HostName 127.0.0.1\n"
        f"  Port {sshd.port}\n"
        f"  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {sshd.known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  KexAlgorithms curve25519-sha256\n"
        "  ControlMaster no\n"
        "  ControlPath none\n"
        "  LogLevel ERROR\n"
    )
    return path


def commands(
    nodes: Sequence[str], descriptor: Path, config: Path, folder: Path, command: str = "true"
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each tool's command line and environment, for `command` on `nodes`. Every peer logs
    in as the ssh_config's user (pdsh would otherwise pass -l with our own user's name)."""
    nodeset, bindir = fold(nodes), Path(sys.executable).parent
    inventory = folder / "inventory.ini"
    inventory.write_text("[nodes]\n" + "\n".join(nodes) + "\n")
    base = dict(os.environ)
    ansible_env = dict(
        base,
        ANSIBLE_CONFIG=str(folder / "none.cfg"),  # not a file: nothing of the host's
        ANSIBLE_HOME=str(folder / "ansible"),
        ANSIBLE_SSH_ARGS=f"-F {config}",
        ANSIBLE_PIPELINING="True",  # the module goes down the one connection
        ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",  # no discovery round trip
        ANSIBLE_HOST_KEY_CHECKING="True",
    )
    return {
        "zcl-run": (
            [str(bindir / "zcl-run"), "-c", str(descriptor), "-w", nodeset, "-f", str(FANOUT),
             "-q", command],
            base,
        ),
        "pdsh": (
            ["pdsh", "-S", "-R", "ssh", "-f", str(FANOUT), "-w", nodeset, command],
            dict(base, PDSH_SSH_ARGS=f"-F {config} -a -x %h"),
        ),
        "clush": (
            [str(bindir / "clush"), "-S", "-q", "-f", str(FANOUT), "-o", f"-F {config}",
             "-w", nodeset, command],
            base,
        ),
        "ansible": (
            [str(bindir / "ansible"), "nodes", "-i", str(inventory), "-f", str(FANOUT),
             "-a", command, "-o"],
            ansible_env,
        ),
    }  # fmt: skip


def once(argv: list[str], env: dict[str, str]) -> tuple[float | None, str]:
    """One whole process: its wall time, or None and why it did not succeed everywhere."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"no end in {RUN_TIMEOUT_S:g} s"
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return None, f"exit {done.returncode}: {lines[-1] if lines else ''}"[:300]
    return elapsed, ""


def measure_size(nodes: int, repeats: int, tools: Sequence[str]) -> dict[str, ShellRun]:
    samples: dict[str, list[float]] = {tool: [] for tool in tools}
    failures: dict[str, list[str]] = {tool: [] for tool in tools}
    with SimulatedCluster(nodes, start_timeout_s=120 + nodes) as cluster:
        folder = Path(tempfile.mkdtemp(prefix="zcl-shells-"))
        try:
            descriptor = folder / "cluster.json"
            descriptor.write_text(json.dumps(cluster.descriptor().to_dict()))
            config = ssh_config(cluster.sshd, folder)
            lines = commands(cluster.node_ids, descriptor, config, folder)
            for turn in range(repeats):
                order = list(tools[turn % len(tools) :]) + list(tools[: turn % len(tools)])
                for tool in order:
                    elapsed, why = once(*lines[tool])
                    if elapsed is None:
                        failures[tool].append(why)
                    else:
                        samples[tool].append(elapsed)
                    print(f"  N={nodes} {tool}: {why or f'{elapsed:.3f} s'}", file=sys.stderr)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {
        tool: {
            "median_s": round(statistics.median(samples[tool]), 4) if samples[tool] else 0.0,
            "samples_s": [round(s, 4) for s in samples[tool]],
            "failures": failures[tool],
        }
        for tool in tools
    }


def versions() -> dict[str, str]:
    found = {"zcl-run": "this tree", "python": platform.python_version()}
    for tool, argv in (("pdsh", ["pdsh", "-V"]), ("clush", [str(Path(sys.executable).parent /
                       "clush"), "--version"]), ("ansible", [str(Path(sys.executable).parent /
                       "ansible"), "--version"]), ("ssh", ["ssh", "-V"])):  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            found[tool] = "missing"
            continue
        text = (done.stdout or done.stderr).strip().splitlines()
        found[tool] = text[0] if text else "?"
    return found


def build_report(sizes: Sequence[int], repeats: int, tools: Sequence[str]) -> BenchFleetShell:
    runs = {str(n): measure_size(n, repeats, tools) for n in sizes}
    ratios: dict[str, dict[str, float]] = {}
    for n, by_tool in runs.items():
        ours = by_tool["zcl-run"]["median_s"]
        ratios[n] = {
            peer: round(by_tool[peer]["median_s"] / ours, 3)
            for peer in tools
            if peer != "zcl-run" and ours and by_tool[peer]["median_s"]
        }
    report: BenchFleetShell = {
        "where": "vm: N node agents and one sshd on this machine; every tool a whole process, cold",
        "command": "true",
        "fanout": FANOUT,
        "repeats": repeats,
        "sizes": list(sizes),
        "versions": versions(),
        "runs": runs,
        "ratios": ratios,  # a peer's time / zcl-run's: above 1, zcl-run is faster
        "goals": {},
    }
    report["goals"] = goals.evaluate(goals.FLEET_SHELL, report)
    return report


def print_report(report: BenchFleetShell) -> None:
    tools = list(report["runs"][str(report["sizes"][0])])
    print(f"`true` on N nodes, fan-out {report['fanout']}, median of {report['repeats']} cold runs")
    print("N".rjust(5) + "".join(tool.rjust(12) for tool in tools))
    for n in report["sizes"]:
        row = report["runs"][str(n)]
        cells = [f"{row[t]['median_s']:.3f} s" if row[t]["samples_s"] else "failed" for t in tools]
        print(str(n).rjust(5) + "".join(cell.rjust(12) for cell in cells))
    for line in goals.describe(report["goals"]):
        print(line)


def cmd_bench(args: argparse.Namespace) -> int:
    missing = [tool for tool in ("pdsh",) if shutil.which(tool) is None]
    if missing and not args.skip_missing:
        raise CliError(f"{', '.join(missing)} not installed: `make system` installs it (as root)")
    tools = [t for t in TOOLS if t not in missing]
    report = build_report(args.sizes, args.repeats, tools)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = [
        f"N={n} {tool}" for n, row in report["runs"].items() for tool, run in row.items()
        if not run["samples_s"]
    ]  # fmt: skip
    if failed:
        print(f"fleet_shell_bench: no successful run for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "python -m zcl_lab.fleet_shell_bench")
    parser.add_argument("--sizes", type=cli.positive_int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--repeats", type=cli.positive_int, default=3, help="runs per figure")
    parser.add_argument("--json", type=Path, metavar="PATH", help="save the report here")
    parser.add_argument(
        "--skip-missing", action="store_true", help="leave out a peer not installed, not fail"
    )
    parser.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
