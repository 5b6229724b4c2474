"""The layering is enforced: import-linter passes on the tree and fails on a forbidden import.

The check runs against a copy of the packages (found first on PYTHONPATH), so planting a bad
import never touches the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = {
    "zcl": "zcl/src/zcl",
    "cluster_patterns": "02-cluster-patterns",
    "cluster_sim": "03-cluster-runner-simulation",
    "zcl_lab": "lab",
    "zcl_tools": "tools",
    "tests": "tests",
}
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(packages: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(packages))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=REPO,  # the contracts are in pyproject.toml
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    for name, folder in PACKAGES.items():
        shutil.copytree(
            REPO / folder, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        (
            "zcl/agent/node_agent.py",
            "from zcl import zmq_node_executor",
            "The node daemon imports nothing of the controller side",
        ),
        (
            "zcl/zmq_journal.py",
            "from zcl_lab import simulated_cluster",
            "zcl imports nothing of the course, the lab",
        ),
        (
            "zcl/heartbeat.py",
            "from cluster_patterns import processes",
            "zcl imports nothing of the course, the lab",
        ),
        (
            "zcl/retry.py",
            "import cluster_sim",
            "zcl imports nothing of the course, the lab",
        ),
        (
            "zcl/zmq_node_executor.py",
            "import asyncssh",
            "The core installs with pyzmq and msgpack",
        ),
        (
            "zcl/zmq_operational_context.py",
            "from zcl import ssh_context",
            "Nothing in zcl imports the SSH side by name",
        ),
    ],
)
def test_a_forbidden_import_breaks_lint(
    packages: Path, module: str, planted: str, contract: str
) -> None:
    assert (packages / "zcl" / "agent").is_dir() and (packages / "zcl_lab").is_dir()
    clean = lint_imports(packages)
    assert clean.returncode == 0, clean.stdout[-2000:]  # the copy is found and passes as it is
    target = packages / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    broken = lint_imports(packages)
    assert broken.returncode != 0
    assert f"{contract}" in broken.stdout and "BROKEN" in broken.stdout
