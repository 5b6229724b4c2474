"""The outsider's path (issue 15, "done means"): the runner printed in step 03's README, run as
it is printed, through both contexts against real agents, a real sshd and a real collector,
gives two journals that `zcl-journal compare` calls equal with its default options, timeouts
included."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, skip_here_fail_on_ci
from zcl_lab.openssh_server import sshd_missing_reason
from zcl_lab.simulated_cluster import SimulatedCluster

README = REPO / "03-cluster-runner-simulation" / "README.md"


def printed_runner() -> str:
    """The code block after the `toy-runner` marker, exactly as a reader copies it."""
    found = re.search(r"<!-- toy-runner -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert found, "the README has no toy runner block"
    return found.group(1)


def test_the_readme_s_runner_imports_only_zcl_s_public_face() -> None:
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(printed_runner()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "zcl" in imported  # the block is the real one
    outside = {
        name for name in imported if name and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert outside == {"zcl"}, outside


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.timeout(300)
def test_the_readme_s_runner_gives_equal_journals_through_both_contexts(tmp_path: Path) -> None:
    skip_here_fail_on_ci(sshd_missing_reason(), "the outsider's runner")
    runner = tmp_path / "toy_runner.py"
    runner.write_text(printed_runner())
    with SimulatedCluster(nodes=4, leaves=2) as cluster:
        descriptor = tmp_path / "cluster.json"
        descriptor.write_text(json.dumps(cluster.descriptor().to_dict()))
        workdirs = {"zmq": cluster.dir / "work-zmq", "ssh": cluster.dir / "work-ssh"}
        for workdir in workdirs.values():  # below the agents' file root; the SSH login's too
            workdir.mkdir()
            workdir.chmod(0o777)
        collector = cluster.collector.endpoint
        over_zmq = run(sys.executable, runner, descriptor, "zmq", collector, workdirs["zmq"])
        assert over_zmq.returncode == 0, over_zmq.stderr
        ssh_journal = tmp_path / "ssh-journal.jsonl"
        over_ssh = run(sys.executable, runner, descriptor, "ssh", ssh_journal, workdirs["ssh"])
        assert over_ssh.returncode == 0, over_ssh.stderr
        zmq_journal = cluster.dir / "zmq-journal.jsonl"
        records = [json.loads(line) for line in zmq_journal.read_text().splitlines()]
        journal_tool = Path(sys.executable).with_name("zcl-journal")
        compared = run(journal_tool, "compare", zmq_journal, ssh_journal)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert compared.stdout.startswith("EQUAL: 16 records"), compared.stdout
    steps = {(r["step"], r.get("error"), r.get("stdout")) for r in records if r["node"] == "node01"}
    assert steps == {
        ("group", None, "42\nLinux\n"),
        ("stdin", None, "FED ON STDIN\n"),
        ("timeout", "CommandTimeoutError", None),
        ("run-what-was-put", None, "checked node01\n"),
    }
