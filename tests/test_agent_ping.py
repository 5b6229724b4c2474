"""zcl-ping, as an operator or a deployment runs it: answered, refused, unreachable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.agents import free_port, running_agent
from zcl import keys

pytestmark = pytest.mark.timeout(60)


def ping(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zcl.agent_ping", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_an_agent_that_accepts_the_key_answers(keydir: Path) -> None:
    runner = keys.controller_dir(keydir, "runner")
    with running_agent(keydir) as agent:
        served = ping("--keys", runner, "node1", agent.endpoint)
        refused = ping("--keys", runner, "node1", agent.endpoint, "--expect-refused")
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("node1: answered in ")
    assert refused.returncode == 1
    assert "served a key it should refuse" in refused.stderr


def test_a_revoked_key_is_refused_and_expect_refused_says_that_is_right(keydir: Path) -> None:
    keys.add_controller(keydir, "runner-2")
    old = keys.controller_dir(keydir, "runner")
    with running_agent(keydir) as agent:
        keys.revoke_controller(keydir, "runner")
        refused = ping("--keys", old, "node1", agent.endpoint)
        expected = ping("--keys", old, "node1", agent.endpoint, "--expect-refused")
        new = ping("--keys", keys.controller_dir(keydir, "runner-2"), "node1", agent.endpoint)
    assert refused.returncode == 1
    assert "refused our key" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert expected.returncode == 0, expected.stderr
    assert new.returncode == 0, new.stderr


def test_nothing_listening_is_not_taken_for_a_refusal(keydir: Path) -> None:
    runner = keys.controller_dir(keydir, "runner")
    closed = f"tcp://127.0.0.1:{free_port()}"
    unreachable = ping("--keys", runner, "node1", closed)
    not_proof = ping("--keys", runner, "node1", closed, "--expect-refused")
    missing = ping("--keys", keydir / "nowhere", "node1", closed)
    assert unreachable.returncode == 1 and "cannot connect" in unreachable.stderr
    assert not_proof.returncode == 2
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"zcl-ping: error: --keys {keydir / 'nowhere'}: not a controller key folder"
    )


def test_expect_version_waits_for_the_release_the_agent_runs(keydir: Path) -> None:
    """A rolling upgrade goes on to the next batch only once the node runs the new release."""
    import importlib.metadata  # noqa: PLC0415 - what pip recorded, which the agent says

    installed = importlib.metadata.version("zcl")
    runner = keys.controller_dir(keydir, "runner")
    with running_agent(keydir) as agent:
        same = ping("--keys", runner, "node1", agent.endpoint, "--expect-version", installed)
        other = ping("--keys", runner, "node1", agent.endpoint, "--expect-version", "9.9.9")
    assert same.returncode == 0, same.stderr
    assert f"(zcl {installed}, " in same.stdout
    assert other.returncode == 1
    assert other.stderr.strip() == f"zcl-ping: node1: runs zcl {installed}, not 9.9.9"
