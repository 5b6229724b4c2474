"""Each container's own keys, and nothing more: the cluster's key domains are generated once
into .build/keys, and every role gets a private copy of the files it needs in .build/mounts/ROLE
(folders 0700, secret keys 0600, owned by the user that runs the role's daemons), mounted at
/keys. A node never holds another node's secret key or any controller's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from zcl import keys
from zcl_lab.cluster_driver.engine import Engine
from zcl_lab.cluster_driver.layout import NODE_IMAGE, ZCL_UID, Layout

SECRET_NAMES = ("id_ed25519",)  # besides every *.key_secret


def ensure_keys(layout: Layout, engine: Engine, nodes: Sequence[str]) -> None:
    """Generate the key domains if the ones there do not cover these nodes (then the runners
    go back to the first controller key)."""
    domain = layout.build / "keys"
    have = {p.name for p in (domain / "nodes").iterdir()} if (domain / "nodes").is_dir() else set()
    if (
        not {*nodes, "collector"} <= have
        or not (domain / "mdp" / "controllers" / nodes[-1]).is_dir()
    ):
        shutil.rmtree(domain, ignore_errors=True)
        keys.generate(domain, [*nodes, "collector"], ["runner"])
        # Step 02's coordinator has a key domain of its own: its workers' keys open no agent.
        keys.generate(domain / "mdp", ["coordinator"], [*nodes, "runner", "monitor"])
        # Each key only in its part: a node's serves, the runner's asks, the monitor's watches.
        given = {**dict.fromkeys(nodes, "worker"), "runner": "client", "monitor": "monitor"}
        for name, role in given.items():
            keys.set_roles(domain / "mdp", name, [role], on="coordinator")
    ssh = domain / "ssh"
    if not (ssh / "id_ed25519").exists():  # for the SSH side of `bench` and the deployment
        ssh.mkdir(parents=True, exist_ok=True)
        engine.docker.containers.run(
            NODE_IMAGE,
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "zcl-bench",
                "-f",
                "/ssh/id_ed25519",
            ],
            volumes={str(ssh): {"bind": "/ssh", "mode": "rw"}},
            remove=True,
        )
    (layout.build / "controller").unlink(missing_ok=True)


def lay_out(layout: Layout, nodes: Sequence[str], *, bare: bool) -> None:
    """Every role's mount. On a bare cluster the agents' and the collector's keys are not
    mounted: the deployment brings them."""
    shutil.rmtree(layout.build / "mounts", ignore_errors=True)
    for node in nodes:  # its host key for step 02's worker, its agent's key, the SSH public key
        own = [f"mdp/controllers/{node}", "ssh/id_ed25519.pub"]
        mount(layout, node, ZCL_UID, own if bare else [f"nodes/{node}", *own])
    mount(layout, "coordinator", 0, ["mdp/nodes/coordinator"])
    mount(layout, "monitor", 0, ["mdp/controllers/monitor"])
    mount(layout, "collector", 0, ["ssh/id_ed25519.pub"] if bare else ["nodes/collector"])
    mount_runner(layout)


def mount_runner(layout: Layout) -> None:
    """What runs the workloads from inside the cluster: the controller key in use, the MDP
    client's and the dashboard's keys, and the SSH private key."""
    shutil.rmtree(layout.build / "mounts" / "runner", ignore_errors=True)
    wanted = [f"controllers/{layout.controller()}", "mdp/controllers/runner"]
    mount(layout, "runner", 0, [*wanted, "mdp/controllers/monitor", "ssh"])


def mount(layout: Layout, role: str, owner: int, paths: Sequence[str]) -> None:
    """Copy PATHS (under .build/keys, keeping their folders) into the role's mount, private."""
    source, dest = layout.build / "keys", layout.build / "mounts" / role
    dest.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if (source / path).is_dir():
            shutil.copytree(source / path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source / path, target)
    for folder, _, files in os.walk(dest):
        _private(Path(folder), owner, 0o700)
        for name in files:
            secret = name.endswith(".key_secret") or name in SECRET_NAMES
            _private(Path(folder) / name, owner, 0o600 if secret else 0o644)


def _private(path: Path, owner: int, mode: int) -> None:
    os.chown(path, owner, owner)
    path.chmod(mode)
