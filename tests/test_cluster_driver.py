"""The Docker cluster's driver without Docker: its command line (through the real wrapper
script), the coordinator's verdicts read from an event log, the Compose override for extra
nodes, and each role's private key mount. The verbs against real containers are the Docker
tier's (tests/test_simulate_cluster.py, tests/test_deploy.py).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import REPO
from zcl import keys
from zcl.errors import CliError
from zcl_lab.cluster_driver import engine, key_mounts, lifecycle, verdicts
from zcl_lab.cluster_driver.commands import USAGE, VERBS, usage_of
from zcl_lab.cluster_driver.layout import ZCL_UID, Layout

SCRIPT = REPO / "docker" / "simulate-cluster.sh"
pytestmark = pytest.mark.timeout(60)


def script(*args: str) -> subprocess.CompletedProcess[str]:
    # A Docker Engine that cannot answer: a verb that reached Docker says so, which no
    # expected message below contains.
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock", ZCL_PROJECT="zclnone")
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explode"], "unknown command 'explode' (commands: build start deploy"),
        (["start", "--workers", "many"], "--workers needs a whole number >= 1, got 'many'"),
        (["start", "--workers", "0"], "--workers needs a whole number >= 1, got '0'"),
        (["start", "--workers"], "--workers needs a number"),
        (["start", "--swarm"], "start: unknown option '--swarm' (try start --help)"),
        (["test", "--duration", "soon"], "--duration needs whole seconds, got 'soon'"),
        (["drill", "--duration"], "--duration needs seconds"),
        (["flaky", "worker1", "150%"], "flaky needs a loss between 1% and 99%, got '150%'"),
        (["flaky", "worker1"], "flaky needs a loss between 1% and 99%, got ''"),
        (["slow", "worker1", "soon"], "slow needs a delay such as 100ms or 0.5s, got 'soon'"),
        (["bench", "--json"], "--json needs a file name"),
        (["bench", "--fast"], "bench: unknown option '--fast' (try bench --help)"),
        (["fail", "--dry-run", "worker1"], "fail: unknown option '--dry-run'"),
        (
            ["flaky", "worker1", "--dry-run", "150%"],
            "flaky needs a loss between 1% and 99%, got '150%'",
        ),
        (
            ["slow", "worker1", "--dry-run", "1h"],
            "slow needs a delay such as 100ms or 0.5s, got '1h'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1_before_any_docker_call(
    args: list[str], message: str
) -> None:
    done = script(*args)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"simulate-cluster.sh: error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_an_engine_that_does_not_answer_is_one_line_not_a_traceback() -> None:
    for args in (["fail", "worker1"], ["status"]):
        done = script(*args)
        assert done.returncode == 1, args
        assert done.stderr.startswith("simulate-cluster.sh: error: Docker: "), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_the_usage_names_every_verb_and_each_verb_explains_itself() -> None:
    listed = script("--help")
    assert listed.returncode == 0
    bare = script()
    assert bare.returncode == 2 and bare.stdout == USAGE
    for verb in VERBS:
        assert f"  {verb}" in listed.stdout or f"/ {verb} " in listed.stdout, verb
        lines = usage_of(verb)
        assert verb in lines.split("  ", 2)[1], (verb, lines)
        helped = script(verb, "--help")
        assert helped.returncode == 0, verb
        assert lines in helped.stdout, verb
    assert (
        usage_of("fail")
        == "  fail NODE / recover NODE    SIGKILL the node's container / start it again"
    )
    assert usage_of("recover") == usage_of("fail")
    assert usage_of("start").count("\n") == 3  # its continuation lines come with it


def test_a_verdict_is_timed_from_the_fault_to_the_first_matching_event(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    before = line(topic="worker.dead", worker="worker3", ts=100.5)  # before the offset
    events.write_text(
        before
        + line(topic="worker.dead", worker="worker3", ts=90.0)  # before the fault: not this one
        + line(topic="worker.dead", worker="worker2", ts=101.0)  # another node
        + line(topic="worker.joined", worker="worker3", ts=101.5)  # another topic
        + "not json, a stray line\n"
        + "[1, 2]\n"  # JSON, not an event
        + line(topic="worker.dead", worker="worker3", ts="soon")  # no time
        + line(topic="worker.dead", worker="worker3", ts=100.75)
        + line(topic="worker.dead", worker="worker3", ts=102.0)
    )
    found = verdicts.seconds_until(
        events, "worker.dead", "worker3", 100.0, offset=len(before), timeout_s=5
    )
    assert found == 0.75


def test_a_verdict_appended_while_waiting_is_found_even_when_torn(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(line(topic="stats", ts=1.0))
    offset = events.stat().st_size
    text = line(topic="worker.joined", worker="worker1", ts=7.5)

    def append_in_two_writes() -> None:  # a line torn across two writes waits for its end
        with events.open("a") as log:
            log.write(text[:10])
            log.flush()
            log.write(text[10:])

    writer = threading.Thread(target=append_in_two_writes)
    writer.start()
    try:
        found = verdicts.seconds_until(
            events, "worker.joined", "worker1", 5.0, offset=offset, timeout_s=20
        )
    finally:
        writer.join(timeout=10)
    assert found == 2.5


def test_no_verdict_in_time_or_no_log_is_one_clear_error(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(line(topic="worker.dead", worker="worker2", ts=10.0))
    with pytest.raises(CliError, match=r"never reported worker\.dead for worker3 within 0\.3 s"):
        verdicts.seconds_until(events, "worker.dead", "worker3", 1.0, timeout_s=0.3)
    with pytest.raises(CliError, match="cannot read the event log"):
        verdicts.seconds_until(tmp_path / "absent.jsonl", "worker.dead", "w", 1.0, timeout_s=0.3)


def test_nodes_beyond_the_compose_files_three_each_get_a_service_and_their_own_keys(
    tmp_path: Path,
) -> None:
    layout = Layout(tmp_path / "docker", "p", Path("/usr/bin/python3"))
    assert lifecycle.workers_override(layout, 3) is None
    override = lifecycle.workers_override(layout, 5)
    assert override is not None
    services = override["services"]
    assert isinstance(services, dict)
    assert sorted(services) == ["worker4", "worker5"]
    assert services["worker5"] == {
        "extends": {"file": str(tmp_path / "docker" / "docker-compose.yml"), "service": "worker1"},
        "hostname": "worker5",
        "environment": {"NODE_NAME": "worker5"},
        "volumes": [f"{tmp_path / 'docker' / '.build'}/mounts/worker5:/keys:ro"],
    }
    json.dumps(override)  # written as JSON, which Compose reads as YAML


def key_layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "docker", "p", Path("/usr/bin/python3"))
    domain = layout.build / "keys"
    keys.generate(domain, ["worker1", "worker2", "collector"], ["runner"])
    keys.generate(domain / "mdp", ["coordinator"], ["worker1", "worker2", "runner", "monitor"])
    (domain / "ssh").mkdir()
    (domain / "ssh" / "id_ed25519").write_text("private\n")
    (domain / "ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA zcl-bench\n")
    return layout


def held(root: Path) -> dict[str, tuple[int, int]]:
    """path under root -> (mode, owner) of everything in a mount."""
    return {
        str(path.relative_to(root)): (stat.S_IMODE(path.stat().st_mode), path.stat().st_uid)
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to the nodes' user needs root")
def test_each_role_holds_its_own_keys_only_and_its_secrets_are_private(tmp_path: Path) -> None:
    layout = key_layout(tmp_path)
    key_mounts.lay_out(layout, ["worker1", "worker2"], bare=False)
    mounts = layout.build / "mounts"
    assert sorted(p.name for p in mounts.iterdir()) == [
        "collector", "coordinator", "monitor", "runner", "worker1", "worker2",
    ]  # fmt: skip
    worker = held(mounts / "worker1")
    assert not [path for path in worker if "worker2" in path or "controllers/runner" in path]
    for path, (mode, owner) in worker.items():
        assert owner == ZCL_UID, path
        if (mounts / "worker1" / path).is_dir():
            assert mode == 0o700, path
        elif path.endswith((".key_secret", "id_ed25519")):
            assert mode == 0o600, path
        else:
            assert mode == 0o644, path
    assert any(
        path.startswith("nodes/worker1/") and path.endswith(".key_secret") for path in worker
    )
    runner = held(mounts / "runner")
    assert runner["ssh/id_ed25519"] == (0o600, 0)
    assert any(p.startswith("controllers/runner/") and p.endswith(".key_secret") for p in runner)
    assert not [path for path in runner if path.startswith("nodes/")]


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to the nodes' user needs root")
def test_a_bare_cluster_mounts_no_agent_key_and_the_runner_follows_the_rotation(
    tmp_path: Path,
) -> None:
    layout = key_layout(tmp_path)
    key_mounts.lay_out(layout, ["worker1", "worker2"], bare=True)
    mounts = layout.build / "mounts"
    assert not (mounts / "worker1" / "nodes").exists()  # the deployment brings it
    assert sorted(held(mounts / "collector")) == ["ssh", "ssh/id_ed25519.pub"]
    keys.add_controller(layout.build / "keys", "runner-2")
    (layout.build / "controller").write_text("runner-2\n")
    key_mounts.mount_runner(layout)
    assert layout.controller() == "runner-2"
    assert sorted(p.name for p in (mounts / "runner" / "controllers").iterdir()) == ["runner-2"]


def line(**event: object) -> str:
    return json.dumps(event) + "\n"


def fake_tool(folder: Path, name: str, exit_status: int) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\nexit {exit_status}\n")
    tool.chmod(0o755)


def test_compose_v2_is_used_where_installed_and_v1_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    fake_tool(tmp_path, "docker", 0)  # `docker compose version` answers: the v2 plugin is there
    fake_tool(tmp_path, "docker-compose", 0)
    assert engine.compose_command() == ["docker", "compose"]
    fake_tool(tmp_path, "docker", 1)  # no plugin: v1
    assert engine.compose_command() == ["docker-compose"]
    (tmp_path / "docker-compose").unlink()
    with pytest.raises(CliError, match=r"neither .docker compose. \(v2\) nor .docker-compose."):
        engine.compose_command()
