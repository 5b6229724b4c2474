"""The deployment's roles read as files (issue 23, class 8), without a host: what the units
allow, what a run prints, who owns the key files, and that a second run changes nothing.

The rehearsal on containerised hosts (tests/test_deploy.py) checks the same on the deployed
units; these fail in seconds, before a Docker image is built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with Ansible, without stubs

from tests.helpers import REPO, skip_here_fail_on_ci

ROLES = REPO / "integration-plan" / "deploy" / "roles"
UNITS = {"zcl_agent": "zcl-agent.service", "zcl_collector": "zcl-collector.service"}
MOST_EXPOSURE = 4.0  # systemd-analyze security: "OK" is below 4.0... and so are we
pytestmark = pytest.mark.timeout(120)


def render_unit(role: str, unit: str, into: Path) -> Path:
    """The unit as Ansible writes it: its template module, with the role's defaults."""
    rendered = into / unit
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local",
         "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{ROLES / role / 'defaults' / 'main.yml'}", "-m", "ansible.builtin.template",
         "-a", f"src={ROLES / role / 'templates' / (unit + '.j2')} dest={rendered}"],
        capture_output=True, text=True, timeout=90, check=False,
        env={"PATH": "/usr/bin:/bin", "ANSIBLE_LOCALHOST_WARNING": "false", "HOME": str(into)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return rendered


def exposure(report: str, unit: str) -> float:
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", report)
    assert found, report[-2000:]
    return float(found.group(1))


@pytest.mark.parametrize("role", sorted(UNITS))
def test_each_unit_rates_at_most_4_in_systemd_analyze_security(role: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    skip_here_fail_on_ci(None if analyze else "no systemd-analyze", "the unit rating")
    assert analyze is not None
    unit = render_unit(role, UNITS[role], tmp_path)
    report = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert exposure(report.stdout, UNITS[role]) <= MOST_EXPOSURE, report.stdout


def tasks(role: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        found.extend(yaml.safe_load(path.read_text()) or [])
    return found


def module_args(task: dict[str, Any], module: str) -> dict[str, Any] | None:
    args = task.get(f"ansible.builtin.{module}")
    return args if isinstance(args, dict) else None


@pytest.mark.parametrize("role", sorted(UNITS))
def test_a_task_that_handles_a_secret_key_prints_nothing(role: str) -> None:
    """`ansible-playbook --diff` printed the agent's secret key: a task that touches one logs
    nothing of it (no_log)."""
    handling = [task for task in tasks(role) if "key_secret" in yaml.safe_dump(task)]
    assert handling, "no task copies the secret key"
    assert all(task.get("no_log") is True for task in handling), handling


@pytest.mark.parametrize("role", sorted(UNITS))
def test_the_service_user_cannot_rewrite_who_it_trusts(role: str) -> None:
    """authorized_keys, and the folder holding it, belong to root: a daemon compromised as
    its own user cannot add a key for itself (they belonged to that user)."""
    prefix = role.removeprefix("zcl_")
    copied = [
        args for task in tasks(role) if (args := module_args(task, "copy"))
        and str(args.get("dest", "")).endswith("/authorized_keys")
    ]  # fmt: skip
    assert copied, "no task installs authorized_keys"
    assert all(args["owner"] == "root" and args["mode"] == "0644" for args in copied), copied
    folders = next(
        task for task in tasks(role) if (args := module_args(task, "file"))
        and args.get("state") == "directory"
    )  # fmt: skip
    keys_folder = [item for item in folders["loop"] if f"zcl_{prefix}_keys" in item["path"]]
    assert len(keys_folder) == 1 and keys_folder[0].get("owner") == "root", folders


@pytest.mark.parametrize("role", sorted(UNITS))
def test_no_folder_is_given_two_modes(role: str) -> None:
    """With the defaults the collector's data folder and the journal's folder are one, once
    0750 and once 0755: every run changed it twice (never "nothing changed")."""
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["dirname"] = lambda path: str(Path(path).parent)
    for _ in range(3):  # defaults that name other defaults
        defaults = {
            name: env.from_string(value).render(**defaults, inventory_hostname="node1")
            if isinstance(value, str) else value
            for name, value in defaults.items()
        }  # fmt: skip
    modes: dict[str, set[str]] = {}
    for task in tasks(role):
        args = module_args(task, "file")
        if args is None or args.get("state") != "directory" or "loop" not in task:
            continue
        for item in task["loop"]:
            path = env.from_string(item["path"]).render(**defaults)
            modes.setdefault(path, set()).add(env.from_string(item["mode"]).render(**defaults))
    assert modes and all(len(given) == 1 for given in modes.values()), modes
