"""Where the cluster's files and images are, and what every verb says on the terminal."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROG = "simulate-cluster.sh"  # what the user typed: messages and errors are in its name
BASE_IMAGE = "zcl-base:bookworm"
NODE_IMAGE = "zcl-node:latest"
BARE_IMAGE = "zcl-bare:latest"  # a node with systemd and sshd only: what `deploy` installs onto
IMAGE_LABEL = "org.zmq-cluster-lab.image"  # on every image the driver makes
DEFAULT_WORKERS = 3  # the nodes docker-compose.yml names itself
ZCL_UID = 990  # the image's zcl user (docker/Dockerfile), who runs the nodes' daemons
AGENT_PORT = 5560


@dataclass(frozen=True)
class Layout:
    docker_dir: Path  # the repository's docker/ folder: compose file, Dockerfiles
    project: str  # the Compose project name (ZCL_PROJECT, default zcl)
    python: Path  # the controller's venv interpreter, for pip and ansible-playbook

    @classmethod
    def from_environment(cls) -> Layout:
        here = Path(__file__).resolve()
        # The package is lab/cluster_driver, installed editable:
        # the repository is three folders up. A wheel install has no docker/ folder beside it.
        docker_dir = Path(os.environ.get("ZCL_DOCKER_DIR", here.parents[3] / "docker"))
        return cls(docker_dir, os.environ.get("ZCL_PROJECT", "zcl"), Path(sys.executable))

    @property
    def build(self) -> Path:
        return self.docker_dir / ".build"

    @property
    def events(self) -> Path:
        return self.build / "events" / "events.jsonl"

    @property
    def deploy(self) -> Path:
        return self.docker_dir.parent / "integration-plan" / "deploy"

    @property
    def compose_files(self) -> list[Path]:
        overrides = [self.build / "workers.yml", self.build / "bare.yml"]
        return [self.docker_dir / "docker-compose.yml", *(f for f in overrides if f.exists())]

    def tool(self, name: str) -> Path:
        """A console script of the controller's venv (ansible-playbook)."""
        return self.python.parent / name

    def controller(self) -> str:
        """The controller key the runners use (`rotate` switches it)."""
        try:
            return (self.build / "controller").read_text().strip() or "runner"
        except FileNotFoundError:
            return "runner"


def say(message: str) -> None:
    print(f"{PROG}: {message}", flush=True)  # flushed: Ansible's and Docker's output interleave
