"""`deploy`, `rotate` and `remove`: the fleet deployment (integration-plan/deploy, Ansible over
SSH) run against a bare cluster, with an inventory and known_hosts made from the running
containers (zcl_lab.fleet), as an operator would run it against real hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

from zcl.errors import CliError
from zcl_lab import event_log, fleet
from zcl_lab.cluster_driver import images, key_mounts
from zcl_lab.cluster_driver.layout import Layout, say

# The same sources make the same wheel, byte for byte (zip timestamps from SOURCE_DATE_EPOCH),
# so a second deploy finds nothing to copy and restarts nothing.
REPRODUCIBLE = {"SOURCE_DATE_EPOCH": "315532800"}


def playbook(layout: Layout, name: str, extra_vars: Sequence[str] = ()) -> None:
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


def deploy(layout: Layout) -> None:
    say("wheelhouse: the core install (zcl, pyzmq, msgpack) for the nodes")
    images.wheel_house(layout, layout.build / "wheelhouse", with_lab=False, env=REPRODUCIBLE)
    playbook(layout, "site.yml")
    event_log.record(layout.events, "deploy.finished", layout.controller())
    say("deployed")


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


def remove(layout: Layout) -> None:
    playbook(layout, "site.yml", ["zcl_state=absent"])
    event_log.record(layout.events, "remove.finished", "all")
    say("removed the deployment from every host")
