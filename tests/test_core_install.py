"""The product installs alone: a fresh venv with only `pip install <wheel>` gets pyzmq and
msgpack, the daemons' commands work, and the executor, journal and ZeroMQ context import.

Slow-ish (it builds the wheel and a venv; pip's cache keeps the downloads to the first run).
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

CORE_DISTRIBUTIONS = {"zmq-cluster-lab", "pyzmq", "msgpack"}
TOOLING = {"pip", "setuptools"}  # what venv itself puts there


def run(*cmd: str | Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, REPO)
    assert built.returncode == 0, built.stderr
    [found] = out.glob("zmq_cluster_lab-*.whl")
    return found


@pytest.fixture(scope="module")
def core_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("core-venv")
    venv.create(where, with_pip=True, clear=True)
    installed = run(where / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr
    yield where / "bin"


def test_the_wheel_ships_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "cluster_sim/zmq_node_executor.py" in names  # the listing is the real one
    assert "cluster_sim/agent/node_agent.py" in names
    shipped_tests = [n for n in names if Path(n).name.startswith("test_") or n.startswith("tests/")]
    assert shipped_tests == []


def test_the_core_install_brings_pyzmq_and_msgpack_only(core_venv: Path) -> None:
    listed = run(core_venv / "python", "-m", "pip", "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert names - TOOLING == CORE_DISTRIBUTIONS


@pytest.mark.parametrize("script", ["zcl-agent", "zcl-collector", "zcl-keys"])
def test_the_daemons_commands_work_in_the_core_install(core_venv: Path, script: str) -> None:
    done = run(core_venv / script, "--help", timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}")


def test_the_controller_side_imports_without_the_extras(core_venv: Path) -> None:
    script = """
import sys
import cluster_sim.zmq_node_executor, cluster_sim.zmq_journal, cluster_sim.zmq_operational_context
from cluster_sim.protocols import ExecutorError, NodeDescriptor
from cluster_sim.zmq_operational_context import ssh_executor
assert "asyncssh" not in sys.modules and "rich" not in sys.modules
try:
    ssh_executor(NodeDescriptor("n1", "127.0.0.1"))
except ExecutorError as exc:
    print(exc)
"""
    done = run(core_venv / "python", "-c", script, timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "n1: this node needs SSH, which needs asyncssh: pip install 'zmq-cluster-lab[ssh]'"
    )


def test_a_command_that_needs_an_extra_says_which_in_one_line(core_venv: Path) -> None:
    done = run(core_venv / "zcl-monitor", "--help", timeout_s=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("pip install 'zmq-cluster-lab[monitor]'")
    assert "Traceback" not in done.stderr
