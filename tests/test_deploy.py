"""The fleet deployment (integration-plan/deploy) rehearsed on the Docker nodes (issue 16).

Bare hosts (systemd as init, sshd, no agent) are started once for the module; the tests then run
in order against them, as an operator would: deploy, check a node, test the cluster with the
deployed agents, deploy again (nothing changes), rotate the controller key, test again, remove.
Like the other Docker tier it skips where no Docker Engine answers, except on CI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, skip_here_fail_on_ci
from tests.test_deploy_roles import MOST_EXPOSURE, exposure
from tests.test_simulate_cluster import docker_missing_reason
from zcl_lab.fleet import recap

SCRIPT = REPO / "docker" / "simulate-cluster.sh"
BUILD = REPO / "docker" / ".build"
PROJECT = f"zcldeploy{os.getpid()}"
NODES = ("worker1", "worker2", "worker3")
RELEASE_A = tomllib.loads((REPO / "zcl" / "pyproject.toml").read_text())["project"]["version"]
RELEASE_B = f"{RELEASE_A}+b"  # deploy --release b
# Each fault of `test` lasts a quarter of this plus 1 s: long enough for the coordinator to
# declare a cut-off worker dead whatever rhythm it learned (3.5 s was not, once).
FAULTS_LAST = "36"
pytestmark = pytest.mark.timeout(900)


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ZCL_PROJECT=PROJECT, ZCL_METRICS_PORT="0")
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def on(service: str, *command: str) -> subprocess.CompletedProcess[str]:
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
         "--filter", f"label=com.docker.compose.service={service}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert found, f"no container for {service}"
    return subprocess.run(
        ["docker", "exec", found, *command], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def bare_cluster() -> Iterator[None]:
    skip_here_fail_on_ci(docker_missing_reason(), "the deployment rehearsal")
    try:
        built = run("build", timeout=900)
        assert built.returncode == 0, built.stderr
        started = run("start", "--bare")
        assert started.returncode == 0, started.stdout + started.stderr
        yield
    finally:
        run("cleanup")


def test_a_bare_node_runs_sshd_and_no_agent(bare_cluster: None) -> None:
    assert on("worker1", "systemctl", "is-active", "ssh").stdout.strip() == "active"
    assert on("worker1", "systemctl", "is-active", "zcl-agent").stdout.strip() != "active"
    assert on("worker1", "test", "-e", "/opt/zmq-cluster-lab").returncode != 0


def test_a_check_of_fresh_hosts_passes_and_changes_nothing(bare_cluster: None) -> None:
    checked = run("deploy", "--check")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    hosts = recap(checked.stdout)
    assert set(hosts) >= {*NODES, "collector"}
    assert all(counts["failed"] == 0 and counts["changed"] > 0 for counts in hosts.values())
    assert on("worker1", "test", "-e", "/opt/zmq-cluster-lab").returncode != 0  # only said


def ping(node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """zcl-ping from outside the playbook, with the controller key in use."""
    chosen = BUILD / "controller"
    controller = chosen.read_text().strip() if chosen.exists() else "runner"
    inventory = (BUILD / "inventory.ini").read_text()
    address = next(
        line.split("ansible_host=")[1] for line in inventory.splitlines()
        if line.startswith(f"{node} ")
    )  # fmt: skip
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "zcl-ping"), "--keys",
         str(BUILD / "keys" / "controllers" / controller), node, f"tcp://{address}:5560", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_deploy_installs_and_starts_every_agent_and_the_collector(bare_cluster: None) -> None:
    deployed = run("deploy")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr
    assert "deployed" in deployed.stdout
    hosts = recap(deployed.stdout)
    assert set(hosts) >= {*NODES, "collector"}
    assert all(counts["failed"] == counts["unreachable"] == 0 for counts in hosts.values())
    for node in NODES:
        assert on(node, "systemctl", "is-active", "zcl-agent").stdout.strip() == "active", node
        served = ping(node, "--expect-version", RELEASE_A)
        assert served.returncode == 0, (node, served.stdout, served.stderr)
    assert on("collector", "systemctl", "is-active", "zcl-collector").stdout.strip() == "active"
    current = on("worker1", "readlink", "/opt/zmq-cluster-lab/current").stdout.strip()
    assert current == f"/opt/zmq-cluster-lab/releases/{RELEASE_A}"


def fleet_descriptor(folder: Path) -> Path:
    """A cluster descriptor for zcl-run: the deployed nodes, and the controller key in use."""
    inventory = (BUILD / "inventory.ini").read_text()
    nodes = [
        {"node_id": node, "host": next(line.split("ansible_host=")[1] for line in
                                       inventory.splitlines() if line.startswith(f"{node} "))}
        for node in NODES
    ]  # fmt: skip
    chosen = BUILD / "controller"
    controller = chosen.read_text().strip() if chosen.exists() else "runner"
    descriptor = folder / "cluster.json"
    keys = BUILD / "keys" / "controllers" / controller
    descriptor.write_text(json.dumps({"nodes": nodes, "zmq_keys_dir": str(keys)}))
    return descriptor


def test_zcl_run_drives_the_deployed_fleet(bare_cluster: None, tmp_path: Path) -> None:
    """The operator's shell against the real containers: every node named, each answering
    with its own host name, and a node left out is not touched."""
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "zcl-run"), "-c", str(fleet_descriptor(tmp_path)),
         "-w", "worker[1-3]", "-x", "worker2", "--json", "hostname"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["nodes"]) == ["worker1", "worker3"]
    names = {report["nodes"][n]["stdout"].strip() for n in ("worker1", "worker3")}
    assert len(names) == 2 and "" not in names  # two hosts, each its own


def test_a_restart_drains_a_running_command_instead_of_killing_it(
    bare_cluster: None, tmp_path: Path
) -> None:
    """systemctl restart while a command runs: the agent gets SIGTERM and drains, and the
    command finishes and is answered. (With KillMode=control-group systemd sent SIGTERM to
    the command too, at the same instant: the rehearsal saw one killed by signal 15.)"""
    running = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "zcl-run"), "-c", str(fleet_descriptor(tmp_path)),
         "-w", "worker2", "--json", "sleep 3 && echo drained"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not on("worker2", "pgrep", "-u", "zcl-agent", "-x", "sleep").stdout.strip():
            assert time.monotonic() < deadline and running.poll() is None, "it never started"
        restarted = on("worker2", "systemctl", "restart", "zcl-agent")  # returns once stopped
        assert restarted.returncode == 0, restarted.stderr
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
        running.wait()
    assert running.returncode == 0, out + err
    assert json.loads(out)["nodes"]["worker2"]["stdout"].strip() == "drained"
    assert on("worker2", "systemctl", "is-active", "zcl-agent").stdout.strip() == "active"


def test_a_deployed_agent_runs_as_its_own_user_with_a_private_key_and_a_hardened_unit(
    bare_cluster: None,
) -> None:
    assert on("worker2", "pgrep", "-u", "zcl-agent", "-f", "[z]cl-agent").stdout.strip()
    assert not on("worker2", "pgrep", "-u", "root", "-f", "[z]cl-agent").stdout.strip()
    secret = on("worker2", "stat", "-c", "%a %U", "/etc/zcl-agent/host.key_secret").stdout
    assert secret.strip() == "600 zcl-agent"
    shown = on(
        "worker2", "systemctl", "show", "zcl-agent", "--property",
        "User,NoNewPrivileges,ProtectSystem,PrivateTmp,Restart,KillMode,LimitNOFILE,ReadWritePaths,"
        "LimitMEMLOCK",
    ).stdout.splitlines()  # fmt: skip
    settings = dict(line.split("=", 1) for line in shown)
    assert settings["User"] == "zcl-agent"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["PrivateTmp"] == "yes"
    assert settings["Restart"] == "on-failure"
    assert settings["KillMode"] == "mixed"  # SIGTERM to the agent alone, which drains
    assert settings["LimitNOFILE"] == "65536"
    # RDMA and NCCL register their buffers: as high as the host allows (here, the container's
    # hard limit, which the inventory reads; infinity on a host whose systemd may raise it).
    given = re.search(r"^zcl_agent_memlock=(\S+)$", (BUILD / "inventory.ini").read_text(), re.M)
    assert given is not None and settings["LimitMEMLOCK"] == given[1]
    assert settings["ReadWritePaths"] == "/var/lib/zcl-agent /srv/zcl-runs"
    verify = on("worker2", "systemd-analyze", "verify", "/etc/systemd/system/zcl-agent.service")
    assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize(
    ("host", "unit", "keys"),
    [
        ("worker2", "zcl-agent", "/etc/zcl-agent"),
        ("collector", "zcl-collector", "/etc/zcl-collector"),
    ],
)
def test_a_deployed_unit_rates_at_most_4_and_root_owns_who_it_trusts(
    bare_cluster: None, host: str, unit: str, keys: str
) -> None:
    """As systemd on the node sees the loaded unit (issue 23, class 8: 7.7 and 7.6 before);
    the daemon runs under it (the cluster test that follows uses it)."""
    report = on(host, "systemd-analyze", "security", "--no-pager", unit)
    assert report.returncode == 0, report.stderr
    assert exposure(report.stdout, f"{unit}.service") <= MOST_EXPOSURE, report.stdout
    assert on(host, "systemctl", "is-active", unit).stdout.strip() == "active"
    owned = on(host, "stat", "-c", "%a %U", keys, f"{keys}/authorized_keys").stdout.split("\n")
    assert owned[:2] == ["750 root", "644 root"], owned


def test_the_cluster_passes_its_test_with_the_deployed_agents(bare_cluster: None) -> None:
    tested = run("test", "--duration", FAULTS_LAST)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr
    assert tested.stdout.rstrip().endswith("PASS")


def test_kill_agent_and_start_agent_act_through_the_unit(bare_cluster: None) -> None:
    """Killed, a deployed agent stays down (Restart=on-failure would bring it back at once)
    until start-agent starts its unit again."""
    assert run("kill-agent", "worker3").returncode == 0
    listed = json.loads(run("status", "--json").stdout)
    assert "agent-down" in next(s["faults"] for s in listed if s["service"] == "worker3")
    assert on("worker3", "systemctl", "is-active", "zcl-agent").stdout.strip() != "active"
    started = run("start-agent", "worker3")
    assert started.returncode == 0, started.stderr
    assert on("worker3", "systemctl", "is-active", "zcl-agent").stdout.strip() == "active"
    listed = json.loads(run("status", "--json").stdout)
    assert next(s["faults"] for s in listed if s["service"] == "worker3") == []


def test_a_second_deploy_changes_nothing(bare_cluster: None) -> None:
    again = run("deploy")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    changed = {host: counts["changed"] for host, counts in recap(again.stdout).items()}
    assert changed and not any(changed.values()), changed


def test_an_upgrade_goes_in_batches_and_a_rollback_is_a_switch(bare_cluster: None) -> None:
    """Release B, one agent at a time, each answering with B before the next goes; then back
    to A, which every node still holds: no install, only the switch and a restart each."""
    upgraded = run("deploy", "--release", "b", "--serial", "1")
    assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr
    assert upgraded.stdout.count("PLAY [The node agents, in batches]") == len(NODES)
    for node in NODES:
        served = ping(node, "--expect-version", RELEASE_B)
        assert served.returncode == 0, (node, served.stdout, served.stderr)
    kept = on("worker2", "ls", "/opt/zmq-cluster-lab/releases").stdout.split()
    assert sorted(kept) == sorted([RELEASE_A, RELEASE_B])
    back = run("deploy")
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr
    assert task_results(back.stdout, "The release's venv holds exactly the wheelhouse's set") == {
        "ok": len(NODES) + 1  # every node held release A still: nothing was installed
    }
    assert task_results(back.stdout, "The release is the one in use") == {"changed": len(NODES) + 1}
    for node in NODES:
        served = ping(node, "--expect-version", RELEASE_A)
        assert served.returncode == 0, (node, served.stdout, served.stderr)
    again = run("deploy")
    changed = {host: counts["changed"] for host, counts in recap(again.stdout).items()}
    assert again.returncode == 0 and changed and not any(changed.values()), changed


def test_a_batch_that_fails_stops_the_play_with_the_rest_still_serving(
    bare_cluster: None,
) -> None:
    """The first batch is made to fail its check (it is asked for a release nobody runs):
    the play stops there, and the nodes of the later batches still serve release A."""
    ansible = REPO / ".venv" / "bin" / "ansible-playbook"
    deploy_dir = REPO / "integration-plan" / "deploy"
    stopped = subprocess.run(
        [str(ansible), "-i", str(BUILD / "inventory.ini"), str(deploy_dir / "site.yml"),
         "-e", f"zcl_wheelhouse={BUILD / f'wheelhouse-{RELEASE_B}'}", "-e", "zcl_serial=1",
         "-e", "zcl_verify_release=0.0.0-nobody"],
        capture_output=True, text=True, timeout=600, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(deploy_dir / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
    )  # fmt: skip
    assert stopped.returncode != 0
    assert stopped.stdout.count("PLAY [The node agents, in batches]") == 1, stopped.stdout[-3000:]
    for node in NODES[1:]:
        served = ping(node, "--expect-version", RELEASE_A)
        assert served.returncode == 0, (node, served.stdout, served.stderr)
    restored = run("deploy")
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr


@pytest.mark.timeout(1500)
def test_an_upgrade_and_a_rollback_under_load_fail_nothing(bare_cluster: None) -> None:
    """The rehearsal: commands run through the fallback executor while the fleet goes to
    release B one agent at a time and back to A; none may fail, run twice or never, every
    journal record must arrive once (the workload's verdict), and every agent ends on A."""
    rehearsed = run("upgrade", "--duration", "240", timeout=1200)
    assert rehearsed.returncode == 0, rehearsed.stdout[-4000:] + rehearsed.stderr
    figures = json.loads(
        next(line for line in reversed(rehearsed.stdout.splitlines()) if '"upgrade_s"' in line)
    )
    print("rehearsal:", json.dumps(figures, sort_keys=True))  # shown by pytest -rP (CI's log)
    assert figures["failed"] == figures["ran_twice"] == figures["never_ran"] == 0, figures
    assert figures["commands"] >= 480 and figures["upgrade_s"] > 0, figures
    for node in NODES:
        served = ping(node, "--expect-version", RELEASE_A)
        assert served.returncode == 0, (node, served.stdout, served.stderr)


def task_results(output: str, task: str) -> dict[str, int]:
    """How many hosts each outcome (ok, changed, skipping ...) had for one task, over every
    batch of the run."""
    counts: dict[str, int] = {}
    for section in output.split("TASK [")[1:]:
        title, _, body = section.partition("\n")
        if title.split(" : ", 1)[-1].rstrip("] *") != task:
            continue
        for line in body.splitlines():
            outcome = line.split(":", 1)[0]
            if line.startswith(f"{outcome}: [") and outcome in ("ok", "changed", "skipping"):
                counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_rotating_the_controller_key_refuses_the_old_and_serves_the_new(bare_cluster: None) -> None:
    chosen = BUILD / "controller"
    old = chosen.read_text().strip() if chosen.exists() else "runner"
    rotated = run("rotate")
    assert rotated.returncode == 0, rotated.stdout[-3000:] + rotated.stderr
    new = chosen.read_text().strip()
    assert new != old
    inventory = (BUILD / "inventory.ini").read_text()
    for node in NODES:  # asked again here, from outside the playbook
        address = next(
            line.split("ansible_host=")[1] for line in inventory.splitlines()
            if line.startswith(f"{node} ")
        )  # fmt: skip
        for controller, flag in ((old, ["--expect-refused"]), (new, [])):
            keys = BUILD / "keys" / "controllers" / controller
            pinged = subprocess.run(
                [str(REPO / ".venv" / "bin" / "zcl-ping"), "--keys", str(keys), node,
                 f"tcp://{address}:5560", *flag],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert pinged.returncode == 0, (node, controller, pinged.stdout, pinged.stderr)
    tested = run("test", "--duration", FAULTS_LAST)  # the runners use the new key
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr


def test_remove_keeps_the_daemons_data_and_nothing_else(bare_cluster: None) -> None:
    removed = run("remove")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr
    for host, unit in [("worker1", "zcl-agent"), ("collector", "zcl-collector")]:
        gone = on(host, "sh", "-c", f"ls -d /opt/zmq-cluster-lab /etc/{unit} "
                                    f"/etc/systemd/system/{unit}.service 2>/dev/null")  # fmt: skip
        assert gone.stdout.strip() == "", (host, gone.stdout)
        assert on(host, "test", "-d", f"/var/lib/{unit}").returncode == 0, host  # kept
        assert on(host, "getent", "passwd", unit).returncode == 0, host  # it owns the data
        assert not on(host, "pgrep", "-f", "[z]cl-(agent|collector)").stdout.strip(), host


def test_remove_with_purge_leaves_nothing_of_the_deployment_on_the_hosts(
    bare_cluster: None,
) -> None:
    removed = run("remove", "--purge")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr
    for host, unit, user in [*((n, "zcl-agent", "zcl-agent") for n in NODES),
                             ("collector", "zcl-collector", "zcl-collector")]:  # fmt: skip
        left = on(host, "sh", "-c",
                  f"ls -d /opt/zmq-cluster-lab /var/cache/zmq-cluster-lab /etc/{unit} "
                  f"/etc/systemd/system/{unit}.service /var/lib/{unit} 2>/dev/null; "
                  f"getent passwd {user}")  # fmt: skip
        assert left.stdout.strip() == "", (host, left.stdout)
        assert not on(host, "pgrep", "-f", "[z]cl-(agent|collector)").stdout.strip(), host
    assert set(recap(removed.stdout)) >= {*NODES, "collector"}
