"""The deployment rehearsal's glue without Docker: the bare override, the inventory, the recap;
and the playbooks parse (ansible-playbook --syntax-check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO
from zcl_lab.fleet import Host, bare_override, inventory, known_hosts, recap

DEPLOY = REPO / "integration-plan" / "deploy"


def test_the_bare_override_boots_systemd_and_keeps_each_node_s_own_mount() -> None:
    override = bare_override(["worker1", "worker2"], Path("/b"))["services"]
    assert set(override) == {"worker1", "worker2", "collector"}
    for name in ("worker1", "worker2"):
        node = override[name]
        assert node["image"] == "zcl-bare:latest"
        assert f"/b/mounts/{name}:/keys:ro" in node["volumes"]
        assert "/sys/fs/cgroup:/sys/fs/cgroup:ro" in node["volumes"]
        assert "SYS_ADMIN" in node["cap_add"] and node["stop_signal"] == "SIGRTMIN+3"
    assert "/b/events:/events" in override["collector"]["volumes"]


def test_the_inventory_groups_hosts_and_the_known_hosts_pin_their_keys() -> None:
    groups = {
        "zcl_agents": [Host("worker1", "10.0.0.2", "ssh-ed25519 AAAA1")],
        "zcl_collectors": [Host("collector", "10.0.0.9", "ssh-ed25519 AAAA9")],
    }
    text = inventory(groups, {"ansible_user": "ops"})
    assert text.splitlines() == [
        "[zcl_agents]",
        "worker1 ansible_host=10.0.0.2",
        "",
        "[zcl_collectors]",
        "collector ansible_host=10.0.0.9",
        "",
        "[all:vars]",
        "ansible_user=ops",
    ]
    assert known_hosts(groups) == "10.0.0.2 ssh-ed25519 AAAA1\n10.0.0.9 ssh-ed25519 AAAA9\n"


def test_the_recap_is_read_per_host() -> None:
    output = """
PLAY RECAP *********************************************************************
collector                  : ok=12   changed=0    unreachable=0    failed=0    skipped=4
worker1                    : ok=14   changed=3    unreachable=0    failed=1    skipped=4
"""
    assert recap(output) == {
        "collector": {"ok": 12, "changed": 0, "unreachable": 0, "failed": 0},
        "worker1": {"ok": 14, "changed": 3, "unreachable": 0, "failed": 1},
    }
    assert recap("no recap here") == {}


def test_the_playbooks_parse(tmp_path: Path) -> None:
    hosts = tmp_path / "inventory.ini"
    hosts.write_text("[zcl_agents]\nw1\n[zcl_collectors]\nc1\n")
    playbook = Path(sys.executable).with_name("ansible-playbook")
    for name in ("site.yml", "rotate-controller-key.yml"):
        checked = subprocess.run(
            [str(playbook), "-i", str(hosts), "--syntax-check", str(DEPLOY / name)],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, ANSIBLE_CONFIG=str(DEPLOY / "ansible.cfg")),
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_build_checks_what_it_needs_before_its_long_first_step() -> None:
    """On a fresh clone `build` spent a minute on the base image, then stopped for want of
    the venv."""
    done = subprocess.run(
        [str(REPO / "docker" / "simulate-cluster.sh"), "build"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHON="/nonexistent/python"),
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # nothing begun
    assert done.stderr == (
        "simulate-cluster.sh: error: no /nonexistent/python: run 'make test' or 'make demo' "
        "once first (it makes the venv)\n"
    )
