"""zcl-run, the fleet's parallel shell, as an operator uses it: the real program against real
agents (CurveZMQ, each its own process), read from its stdout, stderr and exit status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster_patterns import processes
from tests.agents import free_port
from zcl import keys
from zcl.protocols import ClusterDescriptor, NodeDescriptor

pytestmark = pytest.mark.timeout(120)
NODES = [f"node{n:02d}" for n in range(1, 5)]


class Fleet:
    def __init__(self, root: Path, descriptor: Path, roles: processes.Roles) -> None:
        self.root, self.descriptor, self.roles = root, descriptor, roles

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zcl.fleet_shell", "-c", str(self.descriptor), "-q", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four agents (node01-node04, labels leaf L1/L2) and a descriptor naming a fifth node,
    node05, whose agent is not running."""
    keydir, root = tmp_path_factory.mktemp("keys"), tmp_path_factory.mktemp("files")
    keys.generate(keydir, nodes=[*NODES, "node05"], controllers=["runner"])
    with processes.Roles("zcl.agent.node_agent") as roles:
        specs = [
            (node, ["--bind", "tcp://127.0.0.1:*", "--keys", str(keys.node_dir(keydir, node)),
                    "--warm-shells", "0", "--file-root", str(root)])
            for node in NODES
        ]  # fmt: skip
        agents = roles.spawn_many(specs, timeout_s=60)
        nodes = [
            NodeDescriptor(node, "127.0.0.1", agent_port=int(agent.endpoint.rsplit(":", 1)[1]),
                           labels={"leaf": f"L{n % 2 + 1}"})
            for n, (node, agent) in enumerate(zip(NODES, agents, strict=True))
        ]  # fmt: skip
        closed = free_port()
        nodes.append(NodeDescriptor("node05", "127.0.0.1", agent_port=closed))
        descriptor = root.parent / f"{root.name}-cluster.json"
        runner = keys.controller_dir(keydir, "runner")
        cluster = ClusterDescriptor(tuple(nodes), zmq_keys_dir=str(runner))
        descriptor.write_text(json.dumps(cluster.to_dict()))
        yield Fleet(root, descriptor, roles)


def test_each_line_comes_back_prefixed_by_its_node(fleet: Fleet) -> None:
    done = fleet.run("-w", "node[01-04]", "echo out; echo err >&2")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [f"{n}: out" for n in NODES]
    assert sorted(done.stderr.splitlines()) == [f"{n}: err" for n in NODES]


def test_the_exit_status_is_the_worst_and_failures_are_named(fleet: Fleet) -> None:
    exited = fleet.run("-g", "leaf:L1", "exit 3")
    assert exited.returncode == 3
    assert sorted(exited.stderr.splitlines()) == [
        "zcl-run: node01: exited with exit code 3",
        "zcl-run: node03: exited with exit code 3",
    ]
    unreachable = fleet.run("-w", "node[03-05]", "true")
    assert unreachable.returncode == 255  # node05's agent is not running: ssh's status
    [line] = unreachable.stderr.splitlines()
    assert line.startswith("zcl-run: node05: ")


def test_identical_outputs_are_gathered_under_one_node_set(fleet: Fleet) -> None:
    done = fleet.run("-a", "-x", "node05", "-b", "echo same")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "---------------\nnode[01-04] (4)\n---------------\nsame\n"


def test_json_for_scripts(fleet: Fleet) -> None:
    done = fleet.run("--json", "-w", "node[01-02],node05", "echo hi; exit 1")
    report = json.loads(done.stdout)
    assert done.returncode == report["exit_status"] == 255
    assert report["failed"] == "node[01-02,05]"
    assert report["nodes"]["node01"]["stdout"] == "hi\n"
    assert report["nodes"]["node01"]["exit_status"] == 1
    assert report["nodes"]["node05"]["exit_status"] is None
    assert report["nodes"]["node05"]["error"]


def test_a_command_past_its_timeout_is_killed_with_status_124(fleet: Fleet) -> None:
    started = time.monotonic()
    done = fleet.run("-w", "node01", "-t", "0.5", "sleep 30")
    assert done.returncode == 124
    assert time.monotonic() - started < 20
    assert "node01: timed out" in done.stderr


def test_copy_puts_a_file_on_every_node(fleet: Fleet, tmp_path: Path) -> None:
    source = tmp_path / "job.sh"
    source.write_text("echo job\n")
    source.chmod(0o755)
    target = fleet.root / "job.sh"
    done = fleet.run("-w", "node[01-04]", "--copy", str(source), str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "echo job\n" and target.stat().st_mode & 0o777 == 0o755
    refused = fleet.run("-w", "node01", "--copy", str(source), "/etc/job.sh")
    assert refused.returncode == 255 and "forbidden-path" in refused.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-w", "node[01-09]", "true"], "not in the cluster descriptor: node[06-09]"),
        (["-w", "node[01-", "true"], "with no ']'"),
        (["-w", "node01"], "give a command"),
        (["true"], "name the nodes"),
        (["-w", "node01", "--copy", "/nonexistent/x", "/tmp/x"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_status_1(fleet: Fleet, args: list[str], words: str) -> None:
    done = fleet.run(*args)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("zcl-run: error: ") and words in line


def test_list_names_the_nodes_without_running_anything(fleet: Fleet) -> None:
    assert fleet.run("-a", "-x", "@leaf:L2", "--list", "--fold").stdout == "node[01,03,05]\n"


def test_ctrl_c_kills_every_remote_command(fleet: Fleet) -> None:
    marker = f"sleep 3{os.getpid() % 1000:03d}.5"
    process = subprocess.Popen(
        [sys.executable, "-m", "zcl.fleet_shell", "-c", str(fleet.descriptor), "-q",
         "-w", "node[01-04]", marker],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: len(running(marker)) == 4), "the commands did not all start"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "interrupted" in err
    assert wait_for(lambda: not running(marker)), f"left running: {running(marker)}"


def running(marker: str) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-x", "-f", marker], capture_output=True, text=True, check=False
    )
    return found.stdout.split()


def wait_for(condition: Callable[[], bool], within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)  # polling a process table, not synchronising with a peer
    return False
