"""`deploy`, `rotate` and `remove`: the fleet deployment (integration-plan/deploy, Ansible over
SSH) run against a bare cluster, with an inventory and known_hosts made from the running
containers (zcl_lab.fleet), as an operator would run it against real hosts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from zcl.errors import CliError
from zcl_lab import event_log, fleet
from zcl_lab.cluster_driver import images, key_mounts
from zcl_lab.cluster_driver.layout import Layout, say

# The same sources make the same wheel, byte for byte (zip timestamps from SOURCE_DATE_EPOCH),
# so a second deploy finds nothing to copy and restarts nothing.
REPRODUCIBLE = {"SOURCE_DATE_EPOCH": "315532800"}


def playbook(
    layout: Layout, name: str, extra_vars: Sequence[str] = (), *, check: bool = False
) -> None:
    """Run one of the deployment's playbooks against the cluster; its output goes to the
    terminal and to .build/ansible.log."""
    if not (layout.build / "bare.yml").exists():
        raise CliError("deploy, rotate and remove need a bare cluster (start --bare)")
    ansible = layout.tool("ansible-playbook")
    if not ansible.exists():
        raise CliError(
            f"no ansible-playbook beside {layout.python}: run 'make test' or 'make demo' once first"
        )
    names = fleet.write_inventory(layout.project, layout.build, layout.controller())
    print(f"inventory: {' '.join(names)}", flush=True)
    command = [str(ansible), "-i", str(layout.build / "inventory.ini"), str(layout.deploy / name)]
    for extra in extra_vars:
        command += ["-e", extra]
    if check:
        command.append("--check")
    env = dict(os.environ, ANSIBLE_CONFIG=str(layout.deploy / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    log_path = layout.build / "ansible.log"
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, env=env) as ansible_run,
        log_path.open("wb") as log,
    ):
        for line in ansible_run.stdout or ():  # as tee does: to the terminal and the log
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            log.write(line)
    if ansible_run.returncode != 0:
        raise CliError(f"{name} failed (output above, and in {log_path})")


def release_source(layout: Layout, label: str, into: Path) -> tuple[Path, str]:
    """zcl's sources copied, their version given the local label `label` (0.2.0 -> 0.2.0+b):
    a second release to upgrade to and roll back from, as a fleet gets from a new tag."""
    source = layout.docker_dir.parent / "zcl"
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(source, into, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    project = into / "pyproject.toml"
    text = project.read_text()
    found = re.search(r'^version = "([^"]+)"$', text, re.M)
    if found is None:
        raise CliError(f"{source}/pyproject.toml names no version")
    version = f"{found[1]}+{label}"
    project.write_text(text.replace(found[0], f'version = "{version}"', 1))
    return into, version


def deploy(layout: Layout, *, check: bool = False, release: str = "", serial: str = "") -> str:
    """The site play; `release` deploys zcl with that local label, from a wheelhouse of its
    own; `check` only reports what would change. Returns the release deployed."""
    extra = [f"zcl_serial={serial}"] if serial else []
    if release:
        source, version = release_source(layout, release, layout.build / f"zcl-{release}")
        wheels = layout.build / f"wheelhouse-{version}"
        say(f"wheelhouse: release {version} (zcl, pyzmq, msgpack) for the nodes")
        images.wheel_house(layout, wheels, with_lab=False, env=REPRODUCIBLE, zcl_source=source)
        extra.append(f"zcl_wheelhouse={wheels}")
    else:
        say("wheelhouse: the core install (zcl, pyzmq, msgpack) for the nodes")
        images.wheel_house(layout, layout.build / "wheelhouse", with_lab=False, env=REPRODUCIBLE)
        version = ""
    playbook(layout, "site.yml", extra, check=check)
    if check:
        say("checked: nothing was changed")
        return version
    event_log.record(layout.events, "deploy.finished", version or layout.controller())
    say(f"deployed{f' release {version}' if version else ''}")
    return version


def rotate(layout: Layout) -> None:
    old = layout.controller()
    new = f"runner-{time.strftime('%Y%m%d%H%M%S')}"
    playbook(
        layout,
        "rotate-controller-key.yml",
        [f"zcl_old_controller={old}", f"zcl_new_controller={new}"],
    )
    (layout.build / "controller").write_text(new + "\n")  # the switch: the runners use it now
    key_mounts.mount_runner(layout)
    event_log.record(layout.events, "rotate.finished", f"{old} -> {new}")
    say(f"controller key rotated: {old} refused everywhere, {new} served")


def remove(layout: Layout, *, purge: bool = False) -> None:
    playbook(layout, "site.yml", ["zcl_state=absent", f"zcl_purge={str(purge).lower()}"])
    event_log.record(layout.events, "remove.finished", "purged" if purge else "data kept")
    say("removed the deployment from every host" + ("" if purge else " (its data kept)"))
