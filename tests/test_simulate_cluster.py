"""docker/simulate-cluster.sh end to end against the Docker Engine: build, start, faults, cleanup.

Slow (the first build makes a Debian base image and the project image: a few minutes), so the
cluster is built and started once for the module and the verbs run in order against it. Where
no Docker Engine answers the tier skips, except on CI (or with ZCL_REQUIRE_ALL=1), where it
must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agents import free_port
from tests.doc_blocks import shell_blocks
from tests.helpers import REPO, skip_here_fail_on_ci
from zcl_lab import faults

SCRIPT = REPO / "docker" / "simulate-cluster.sh"
EVENTS = REPO / "docker" / ".build" / "events" / "events.jsonl"
PROJECT = f"zcltest{os.getpid()}"
METRICS_PORT = str(free_port())
pytestmark = pytest.mark.timeout(900)


def docker_missing_reason() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    return None if info.returncode == 0 else "no Docker Engine answers (docker info failed)"


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ZCL_PROJECT=PROJECT, ZCL_METRICS_PORT=METRICS_PORT)
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def status() -> dict[str, tuple[str, str, str]]:
    """service -> (state, health, faults as in the table: "-" or "flaky,slow")."""
    listed = json.loads(run("status", "--json").stdout)
    return {s["service"]: (s["state"], s["health"], ",".join(s["faults"]) or "-") for s in listed}


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status()}"
        time.sleep(0.5)  # polling Docker's view of the containers; it has no wait for this


def events() -> list[dict[str, object]]:
    return [json.loads(line) for line in EVENTS.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    skip_here_fail_on_ci(docker_missing_reason(), "the Docker tier")
    try:
        built = run("build", timeout=900)
        assert built.returncode == 0, built.stderr
        started = run("start", "--workers", "4")
        assert started.returncode == 0, started.stderr
        yield
    finally:
        run("cleanup")


def test_start_brings_up_a_healthy_cluster(cluster: None) -> None:
    services = status()
    assert services["coordinator"][:2] == ("running", "healthy")
    for node in ("worker1", "worker2", "worker3", "worker4"):
        assert services[node] == ("running", "healthy", "-"), services


def in_container(service: str, *command: str) -> str:
    done = subprocess.run(
        ["docker", "exec", container_of(service), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip()


def test_each_node_holds_its_own_keys_only_and_runs_its_daemons_unprivileged(
    cluster: None,
) -> None:
    """Every secret used to be 0644 and mounted on every node (the controller's and the SSH
    private key included), the agents ran as root, and SSH logged in as root."""
    held = in_container("worker1", "find", "/keys", "-type", "f").split()
    assert sorted(held) == [
        "/keys/mdp/controllers/worker1/id.key",
        "/keys/mdp/controllers/worker1/id.key_secret",
        "/keys/mdp/controllers/worker1/known_hosts",
        "/keys/nodes/worker1/authorized_keys",
        "/keys/nodes/worker1/host.key",
        "/keys/nodes/worker1/host.key_secret",
        "/keys/ssh/id_ed25519.pub",
    ]
    for secret in (
        "/keys/nodes/worker1/host.key_secret",
        "/keys/mdp/controllers/worker1/id.key_secret",
    ):
        assert in_container("worker1", "stat", "-c", "%a %U", secret) == "600 zcl", secret
    for daemon in ("[z]cl-agent", "[z]cl-worker"):
        assert in_container("worker1", "pgrep", "-u", "zcl", "-f", daemon), daemon
        assert not in_container("worker1", "pgrep", "-u", "root", "-f", daemon), daemon
    effective = in_container("worker1", "sshd", "-T").splitlines()
    for setting in (
        "passwordauthentication no",
        "permitrootlogin no",
        "kbdinteractiveauthentication no",
    ):
        assert setting in effective, setting
    for service in ("coordinator", "monitor", "collector"):
        assert "/keys/controllers" not in in_container(service, "find", "/keys"), service
    trusted = in_container("coordinator", "cat", "/keys/mdp/nodes/coordinator/authorized_keys")
    assert {line.split()[1]: line.split()[-1] for line in trusted.splitlines()} == {
        **{f"worker{n}": "roles=worker" for n in range(1, 5)},
        "runner": "roles=client",
        "monitor": "roles=monitor",
    }  # and the cluster works with them: the tests below run tasks and watch events


def test_each_node_has_an_ssh_host_key_of_its_own(cluster: None) -> None:
    """ssh-keygen -A only adds the keys that are missing, so every node kept the image's: one
    node's key let its holder pass for any other (issue 23, class 8)."""
    nodes = ("worker1", "worker2", "worker3", "worker4")
    keys = {node: in_container(node, "cat", "/etc/ssh/ssh_host_ed25519_key.pub") for node in nodes}
    assert all(keys.values()), keys
    assert len({key.split()[1] for key in keys.values()}) == len(nodes), keys


def test_fail_kills_a_node_the_cluster_notices_and_recover_brings_it_back(cluster: None) -> None:
    assert run("fail", "worker2").returncode == 0
    assert status()["worker2"][0] == "exited" and status()["worker2"][2] == "failed"
    wait_for(
        lambda: any(
            e.get("topic") == "worker.dead" and e.get("worker") == "worker2" for e in events()
        ),
        "the coordinator to declare worker2 dead",
    )
    assert run("recover", "worker2").returncode == 0
    wait_for(lambda: status()["worker2"][:2] == ("running", "healthy"), "worker2 healthy again")
    log = events()
    fault = [e["event"] for e in log if e.get("target") == "worker2"]
    assert fault == ["fault.start.fail", "fault.end.fail"]  # on the same timeline as the cluster's


def test_pause_freezes_a_node_and_resume_thaws_it(cluster: None) -> None:
    assert run("pause", "worker3").returncode == 0
    assert status()["worker3"][0] == "paused"
    assert run("resume", "worker3").returncode == 0
    wait_for(lambda: status()["worker3"][:2] == ("running", "healthy"), "worker3 healthy again")


def test_a_partitioned_node_is_declared_dead_and_rejoins_when_healed(cluster: None) -> None:
    def seen(topic: str, after: float) -> bool:
        return any(
            e.get("topic") == topic and e.get("worker") == "worker1" and float(e["ts"]) > after  # type: ignore[arg-type]
            for e in events()
        )

    cut = time.time()  # before: the coordinator may notice while the script is still cutting
    assert run("partition", "worker1").returncode == 0
    assert status()["worker1"][2] == "partitioned"
    wait_for(lambda: seen("worker.dead", cut), "the coordinator to declare worker1 dead")
    assert run("partition", "worker1").returncode == 1  # twice is an error, not a second cut
    healed = time.time()
    assert run("heal").returncode == 0
    wait_for(lambda: seen("worker.ready", healed), "worker1 to rejoin")
    assert status()["worker1"] == ("running", "healthy", "-")


def address_of(service: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         container_of(service)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_dry_run_prints_each_nodes_steps_and_changes_nothing(cluster: None) -> None:
    logged = len(events())
    cut = run("partition", "--dry-run", "worker1", "worker2")
    assert cut.returncode == 0, cut.stderr
    expected = [
        f"{node}: {step}"
        for node, peer in (("worker1", "worker2"), ("worker2", "worker1"))
        for step in [*faults.partition([address_of(peer)]), *faults.partition_hook()]
    ]
    assert cut.stdout.splitlines() == expected
    lossy = run("flaky", "worker3", "--dry-run", "30%")
    assert lossy.returncode == 0, lossy.stderr
    assert lossy.stdout.splitlines() == [f"worker3: {step}" for step in faults.flaky(30)]
    slowed = run("slow", "--dry-run", "worker3", "80ms")
    assert slowed.returncode == 0, slowed.stderr
    assert slowed.stdout.splitlines()[1:] == [f"worker3: {step}" for step in faults.slow()]
    assert "--delay 80ms" in slowed.stdout.splitlines()[0]
    assert {in_force for _, _, in_force in status().values()} == {"-"}  # nothing was cut
    assert (
        len(events()) == logged
        or all(  # and no fault was written to the timeline
            e.get("source") != "simulate-cluster" for e in events()[logged:]
        )
    )


def test_flaky_makes_a_node_lose_packets_and_fast_takes_it_away(cluster: None) -> None:
    assert run("flaky", "worker4", "40%").returncode == 0
    assert status()["worker4"][2] == "flaky"
    assert run("flaky", "worker4", "10").returncode == 1  # already flaky: one fault at a time
    assert run("fast", "worker4").returncode == 0
    assert status()["worker4"][2] == "-"
    targets = [(e["event"], e["target"]) for e in events() if e.get("source") == "simulate-cluster"]
    assert ("fault.start.flaky.40%", "worker4") in targets
    assert ("fault.end.flaky", "worker4") in targets


def container_of(service: str) -> str:
    return subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


# From one node, how long another node's agent takes to send the first byte of its ZMTP
# greeting (it sends it as soon as a connection is accepted): a bare network round trip. The
# node under test may also be lossy, so a connection lost on the way is tried again (at most
# 20 tries for 5 samples) and said on stderr, not taken for the answer.
GREETING_PROBE = """
import socket, sys, time
samples = []
for _ in range(20):
    try:
        with socket.create_connection((sys.argv[1], 5560), timeout=10) as conn:
            started = time.monotonic()
            if not conn.recv(1):
                raise ConnectionError("closed before the greeting")
            samples.append(time.monotonic() - started)
    except OSError as exc:
        print(f"probe: {exc!r}", file=sys.stderr)
    if len(samples) == 5:
        print(sorted(samples)[2])
        break
else:
    sys.exit(1)
"""


def greeting_s(to_node: str) -> float:
    probe = subprocess.run(
        ["docker", "exec", container_of("worker1"), "python", "-c", GREETING_PROBE, to_node],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert probe.returncode == 0, f"greeting probe to {to_node} failed: {probe.stderr}"
    return float(probe.stdout)


def test_slow_delays_a_nodes_traffic_and_fast_takes_it_away(cluster: None) -> None:
    assert run("slow", "worker4", "300ms").returncode == 0
    try:
        assert status()["worker4"][2] == "slow"
        assert run("slow", "worker4", "10ms").returncode == 1  # already slow: one at a time
        assert run("flaky", "worker4", "5%").returncode == 0
        assert status()["worker4"][2] == "flaky,slow"
        slowed = greeting_s("worker4")
        assert slowed >= 0.15  # the greeting is held half the delay; unslowed about 1 ms
        wait_for(lambda: status()["worker4"][1] == "healthy", "worker4 to stay healthy when slow")
    finally:  # the later tests share this cluster: never leave them a faulted node
        healed = run("fast", "worker4")
    assert healed.returncode == 0
    assert status()["worker4"][2] == "-"
    relay = subprocess.run(
        ["docker", "exec", container_of("worker4"), "pgrep", "-f", "zcl_lab.slow_link"],
        capture_output=True,
        check=False,
    )
    assert relay.returncode == 1  # the relay is gone with the rules
    assert greeting_s("worker4") < slowed
    targets = [(e["event"], e["target"]) for e in events() if e.get("source") == "simulate-cluster"]
    assert ("fault.start.slow.300ms", "worker4") in targets
    assert ("fault.end.slow", "worker4") in targets


def test_bench_measures_both_transports_and_detection_across_containers(
    cluster: None, tmp_path: Path
) -> None:
    saved = tmp_path / "bench.json"
    done = run("bench", "--quick", "--json", str(saved), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(saved.read_text())
    for method in ("ssh_persistent_asyncssh", "zmq", "ssh_fresh_asyncssh"):
        assert report["latency"][method]["p50_ms"] > 0
    assert report["throughput"]["zmq"]["per_s"] > 0
    assert set(report["detection"]) == {"fail", "pause", "partition"}
    for fault in report["detection"].values():
        assert 0 < fault["detected_s"] < 30 and 0 < fault["rejoined_s"] < 30
    assert "failure detection" in done.stdout
    assert {health for _, health, _ in status().values()} <= {"healthy", "-"}  # all healed
    # The timeline: each fault on the node and the coordinator's verdicts, in order.
    victim = report["timeline"][0]["node"]
    mine = [e["event"] for e in report["timeline"] if e["node"] == victim]
    for kind in ("fail", "pause", "partition"):
        start, end = mine.index(f"fault.start.{kind}"), mine.index(f"fault.end.{kind}")
        assert "worker.dead" in mine[start:end], f"{kind}: no verdict while the fault lasted"
        assert "worker.joined" in mine[end:], f"{kind}: never back after it ended"
        assert report["detection"][kind]["node"] == victim  # the node the fault was put on
    times = [e["t"] for e in report["timeline"]]
    assert times == sorted(times) and times[0] >= 0


def test_the_workload_gets_everything_exactly_once_through_the_faults(cluster: None) -> None:
    done = run("test", "--duration", "48", timeout=600)  # each fault lasts 48 / 4 + 1 = 13 s
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert summary["tasks"]["completed"] == summary["tasks"]["submitted"] > 0
    assert summary["commands"]["in_journal"] == summary["commands"]["planned"] > 0
    assert "PASS" in done.stdout
    targets = [(e["event"], e["target"]) for e in events() if e.get("source") == "simulate-cluster"]
    for fault in (
        ("fault.start.fail", "worker1"),
        ("fault.end.partition", "worker2"),
        ("fault.start.slow.50ms", "worker3"),
        ("fault.end.flaky", "worker3"),
    ):
        assert fault in targets
    # worker2 was cut off for 10 s while tasks went on elsewhere; healed, it rejoins on its own
    # and takes tasks again.
    log = events()
    cut, healed = (
        float(e["ts"])  # type: ignore[arg-type]
        for e in log
        if e.get("target") == "worker2" and "partition" in str(e.get("event"))
    )
    assert healed - cut >= 10
    assert any(
        e.get("topic") == "task.assigned"
        and e.get("worker") == "worker2"
        and float(e["ts"]) > healed  # type: ignore[arg-type]
        for e in log
    ), done.stdout
    assert "worker2 declared dead" in done.stdout and "s after healing" in done.stdout


def test_the_rollback_drill_serves_a_node_over_ssh_while_its_agent_is_down(
    cluster: None,
) -> None:
    done = run("drill", "--duration", "12", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    served = summary["commands"]["served"]
    assert served["worker2 ssh"] > 0 and served["worker2 zmq"] > 0  # both, in turn
    # ZeroMQ serves the healthy nodes. On a loaded machine an agent's answer can come late
    # enough for the fallback to take over a command or two, which is its job; it must not
    # take over a healthy node.
    for node in {how.split()[0] for how in served} - {"worker2"}:
        assert served.get(f"{node} zmq", 0) > 4 * served.get(f"{node} ssh", 0), summary
    assert summary["commands"]["in_journal"] == summary["commands"]["planned"] > 0
    targets = [(e["event"], e["target"]) for e in events() if e.get("source") == "simulate-cluster"]
    assert ("fault.start.agent-down", "worker2") in targets
    assert ("fault.end.agent-down", "worker2") in targets
    assert status()["worker2"][2] == "-"


def test_a_rolling_restart_of_every_agent_fails_no_command_and_runs_none_twice(
    cluster: None,
) -> None:
    """Issue 22, part 2, on the containers: each node's agent is stopped with SIGTERM (it
    drains), started again, one after another, while commands run through the fallback."""
    done = run("rolling-restart", "--duration", "12", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    commands = summary["commands"]
    assert commands["failed_count"] == 0 and commands["ran_twice"] == 0, commands
    assert commands["never_ran"] == 0 and commands["missing"] == 0, commands
    assert commands["in_journal"] == commands["planned"] > 0
    restarted = [str(e["target"]) for e in events() if e.get("event") == "fault.end.agent-restart"]
    assert set(restarted) >= {"worker1", "worker2", "worker3", "worker4"}
    states = status()
    assert all(states[node][0] == "running" for node in set(restarted)), states


def health_check_passes(service: str) -> bool:
    """Run the service's Docker health check once, now, instead of waiting for Docker's."""
    container = container_of(service)
    inspected = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", container],
        capture_output=True,
        text=True,
        check=True,
    )
    kind, command = json.loads(inspected.stdout)
    assert kind == "CMD-SHELL"
    done = subprocess.run(
        ["docker", "exec", container, "sh", "-c", command], capture_output=True, check=False
    )
    return done.returncode == 0


def test_kill_agent_leaves_sshd_and_start_agent_brings_it_back(cluster: None) -> None:
    assert health_check_passes("worker3")
    assert run("kill-agent", "worker3").returncode == 0
    assert status()["worker3"][:1] == ("running",) and status()["worker3"][2] == "agent-down"
    assert not health_check_passes("worker3")  # the check must not match its own command line
    assert run("kill-agent", "worker3").returncode == 1  # already down
    sshd = subprocess.run(
        ["docker", "exec", container_of("worker3"), "pgrep", "-x", "sshd"],
        capture_output=True,
        check=False,
    )
    assert sshd.returncode == 0
    assert run("start-agent", "worker3").returncode == 0
    assert status()["worker3"][2] == "-"
    assert health_check_passes("worker3")


def test_the_documents_docker_commands_run(cluster: None) -> None:
    blocks = shell_blocks("docker")
    assert blocks, "no ```sh docker block in the plan documents"
    env = dict(os.environ, ZCL_PROJECT=PROJECT, ZCL_METRICS_PORT=METRICS_PORT)
    for block in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.body],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{block}: {done.stdout}{done.stderr}"
    wait_for(lambda: status()["worker2"][:2] == ("running", "healthy"), "worker2 healthy again")


def test_bad_input_is_one_clear_line_and_a_failure(cluster: None) -> None:
    for args, message in (
        (["fail", "worker9"], "no node 'worker9'"),
        (["fail"], "name a node"),
        (["start", "--workers", "many"], "--workers needs a whole number"),
        (["explode"], "unknown command 'explode'"),
        (["test", "--duration", "soon"], "--duration needs whole seconds"),
        (["flaky", "worker1", "150%"], "a loss between 1% and 99%"),
        (["slow", "worker1", "soon"], "a delay such as 100ms"),
        (["slow", "worker1"], "a delay such as 100ms"),
        (["bench", "--json"], "--json needs a file name"),
        (["bench", "--fast"], "bench: unknown option '--fast'"),
        (["kill-agent"], "name a node"),
        (["drill", "--duration", "soon"], "--duration needs whole seconds"),
    ):
        done = run(*args)
        assert done.returncode == 1, args
        assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "fail NODE" in run("fail", "--help").stdout
    assert run("logs", "worker1").returncode == 0


def test_stop_then_cleanup_leaves_nothing(cluster: None) -> None:
    assert run("stop").returncode == 0
    assert {state for state, _, _ in status().values()} == {"exited"}
    assert run("cleanup").returncode == 0
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert leftovers == ""
    for which in (["zcl-node"], ["zcl-base"], ["--filter", "label=org.zmq-cluster-lab.image"]):
        images = subprocess.run(
            ["docker", "images", "-aq", *which], capture_output=True, text=True, check=True
        ).stdout
        assert images == "", which
    assert not (REPO / "docker" / ".build").exists()
