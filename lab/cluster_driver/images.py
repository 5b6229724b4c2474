"""`build` and `cleanup`: the cluster's images made without a registry, and taken away again.

The base image is a Debian root file system made by mmdebstrap from the host's own apt sources
and imported; the node image adds a wheelhouse of the project at the dependency versions the
tests use; the bare image (docker/bare) is a node with systemd and sshd only, for `deploy`.
Everything the build needs is checked before its long first step, never after it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from zcl.errors import CliError
from zcl_lab import docker_api
from zcl_lab.cluster_driver.engine import Engine
from zcl_lab.cluster_driver.layout import (
    BARE_IMAGE,
    BASE_IMAGE,
    IMAGE_LABEL,
    NODE_IMAGE,
    Layout,
    say,
)

BASE_PACKAGES = [  # systemd and sudo: the bare nodes boot with systemd and let the deployment in
    *("python3", "python3-venv", "openssh-server", "iproute2", "iptables", "procps", "tini"),
    *("systemd", "systemd-sysv", "sudo"),
]
NODE_IMAGE_FILES = ("Dockerfile", "node-init.sh", "sshd-keys-only.conf")


def build(layout: Layout) -> None:
    if shutil.which("docker") is None:
        raise CliError("docker is not installed")
    try:
        engine = Engine(layout)
        engine.docker.ping()
    except docker_api.errors().DockerException:
        raise CliError("no Docker Engine answers (docker info failed)") from None
    need_base = not engine.image_exists(BASE_IMAGE)
    if need_base and shutil.which("mmdebstrap") is None:
        raise CliError("mmdebstrap is missing: apt-get install mmdebstrap")
    layout.build.mkdir(parents=True, exist_ok=True)
    if need_base:
        _build_base(engine, layout.build / "base.tar")
    say("wheelhouse: the project and the dependency versions the tests use")
    context = layout.build / "image"
    shutil.rmtree(context, ignore_errors=True)
    wheel_house(layout, context / "wheels", with_lab=True)
    for name in NODE_IMAGE_FILES:
        shutil.copy2(layout.docker_dir / name, context / name)
    say(f"building {NODE_IMAGE}")
    _build(engine, context, NODE_IMAGE, {"BASE": BASE_IMAGE}, replaces=True)
    say(f"building {BARE_IMAGE}")
    _build(engine, layout.docker_dir / "bare", BARE_IMAGE, {"NODE": NODE_IMAGE}, replaces=False)
    say(f"built {NODE_IMAGE} and {BARE_IMAGE}")


def _build_base(engine: Engine, tar: Path) -> None:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if not sources.exists():
        sources = Path("/etc/apt/sources.list")
    say(f"building {BASE_IMAGE} from Debian packages (about a minute)")
    command = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
    done = subprocess.run([*command, "bookworm", str(tar), str(sources)], check=False)
    if done.returncode != 0:
        raise CliError(f"mmdebstrap failed (exit {done.returncode}; its output is above)")
    repository, tag = BASE_IMAGE.split(":")
    engine.docker.api.import_image_from_file(
        str(tar), repository=repository, tag=tag, changes=[f"LABEL {IMAGE_LABEL}=base"]
    )
    tar.unlink()


def wheel_house(
    layout: Layout,
    wheels: Path,
    *,
    with_lab: bool,
    env: dict[str, str] | None = None,
    zcl_source: Path | None = None,
) -> None:
    """Wheels of zcl (and with `with_lab`, of the course and lab with its lab extra) and their
    dependencies, at the versions installed in the controller's venv, so that the nodes run
    what the tests ran. zcl is named beside the course, whose dependency on it it meets;
    `zcl_source` builds it from another folder (a release made for a rehearsal)."""
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    frozen = _pip(layout, ["freeze", "--exclude-editable"], capture=True)
    constraints = layout.build / "constraints.txt"
    constraints.write_text(frozen)
    repo = layout.docker_dir.parent
    projects = [str(zcl_source or repo / "zcl"), *([f"{repo}[lab]"] if with_lab else [])]
    _pip(
        layout,
        [
            "wheel",
            "--quiet",
            "--constraint",
            str(constraints),
            "--wheel-dir",
            str(wheels),
            *projects,
        ],
        env=env,
    )


def _pip(
    layout: Layout, args: list[str], *, capture: bool = False, env: dict[str, str] | None = None
) -> str:
    done = subprocess.run(
        [str(layout.python), "-m", "pip", *args],
        stdout=subprocess.PIPE if capture else None,
        text=True,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )
    if done.returncode != 0:
        raise CliError(f"pip {args[0]} failed (exit {done.returncode}; its output is above)")
    return done.stdout or ""


def _build(
    engine: Engine, context: Path, tag: str, buildargs: dict[str, str], *, replaces: bool
) -> None:
    errors = docker_api.errors()
    previous = engine.docker.images.get(tag).id if replaces and engine.image_exists(tag) else None
    try:
        engine.docker.images.build(
            path=str(context), tag=tag, buildargs=buildargs, pull=False, rm=True
        )
    except errors.BuildError as exc:
        last = [str(step.get("stream", "")).strip() for step in exc.build_log][-3:]
        raise CliError(
            f"building {tag} failed: {exc.msg} ({' | '.join(s for s in last if s)})"
        ) from None
    if previous and previous != engine.docker.images.get(tag).id:
        # The image it replaces would stay behind untagged; containers still using it keep it.
        with contextlib.suppress(errors.APIError):
            engine.docker.images.remove(previous)


def cleanup(layout: Layout) -> None:
    """Containers, network and volumes of the project, our images, and the build folder."""
    if (layout.docker_dir / "docker-compose.yml").exists():
        engine = Engine(layout)
        engine.compose("down", "--volumes", "--remove-orphans", check=False)
        errors = docker_api.errors()
        for image in (BARE_IMAGE, NODE_IMAGE, BASE_IMAGE):
            with contextlib.suppress(
                errors.APIError
            ):  # not there, or still used by another project's containers
                engine.docker.images.remove(image)
        # and any image of ours a rebuild or an interrupted build left untagged
        for leftover in engine.docker.images.list(all=True, filters={"label": IMAGE_LABEL}):
            with contextlib.suppress(errors.APIError):
                engine.docker.images.remove(leftover.id, force=True)
        engine.close()
    shutil.rmtree(layout.build, ignore_errors=True)
    say("removed the cluster's containers, network, images and build folder")
