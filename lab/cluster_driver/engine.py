"""The Docker Engine as the driver sees it: one Compose project's containers, found by their
Compose labels (never by names the driver makes up), through the Docker SDK; and Compose itself,
run as a command, v2 (`docker compose`) where it is installed and v1 (`docker-compose`) if not.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zcl.errors import CliError
from zcl_lab import docker_api
from zcl_lab.cluster_driver.layout import NODE_IMAGE, Layout

HEALTHY_WITHIN_S = 90


class Engine:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.docker = docker_api.client()
        self.started: list[Any] = []  # containers run on the cluster's network, removed by close()

    def container(self, service: str) -> Any | None:
        found = self.docker.containers.list(
            all=True,
            filters={
                "label": [
                    f"{docker_api.PROJECT_LABEL}={self.layout.project}",
                    f"{docker_api.SERVICE_LABEL}={service}",
                ]
            },
        )
        return found[0] if found else None

    def service(self, service: str) -> Any:
        container = self.container(service)
        if container is None:
            raise CliError(f"no service '{service}' (try status)")
        return container

    def nodes(self) -> list[str]:
        return [
            docker_api.service_of(c)
            for c in docker_api.containers(self.layout.project, stopped_too=True)
            if c.labels.get("zcl.role") == "node"
        ]

    def node(self, name: str | None) -> Any:
        """The container of a node the user named, or one line saying which nodes there are."""
        listed = " ".join(self.nodes())
        if not name:
            raise CliError(f"name a node, e.g. worker1 (nodes: {listed})")
        container = self.container(name)
        if container is None or container.labels.get("zcl.role") != "node":
            raise CliError(f"no node '{name}' in this cluster (nodes: {listed})")
        return container

    def run_in(self, service: str, argv: Sequence[str], **options: Any) -> tuple[int, str]:
        """Run a command inside a service's container: its exit status and its output."""
        code, output = self.service(service).exec_run(list(argv), **options)
        return int(code or 0), (output or b"").decode(errors="replace")

    def succeeds_in(self, service: str, argv: Sequence[str]) -> bool:
        return self.run_in(service, argv)[0] == 0

    def address(self, service: str) -> str:
        networks = self.service(service).attrs["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def wait_healthy(self, service: str, within_s: float = HEALTHY_WITHIN_S) -> None:
        container = self.service(service)
        deadline = time.monotonic() + within_s
        while container.attrs["State"].get("Health", {}).get("Status") != "healthy":
            if time.monotonic() > deadline:
                raise CliError(f"{service} did not become healthy (see: logs {service})")
            time.sleep(1)  # Docker has no call that waits for a health status: poll it
            container.reload()

    def wait_listening(self, service: str, port: int, within_s: float, failure: str) -> None:
        """Until something listens on the port inside the service (a daemon started detached)."""
        deadline = time.monotonic() + within_s
        while not self.run_in(service, ["ss", "-Hltn", f"sport = :{port}"])[1].strip():
            if time.monotonic() > deadline:
                raise CliError(failure)
            time.sleep(0.1)  # it runs detached: poll for its listening socket

    def image_exists(self, name: str) -> bool:
        errors = docker_api.errors()
        try:
            self.docker.images.get(name)
        except errors.ImageNotFound:
            return False
        return True

    def start_in_cluster(self, role: str, argv: Sequence[str]) -> Any:
        """Run a command in a container of our image on the cluster's network, with the
        runner's keys and the shared events folder; close() removes it, also on failure."""
        networks = self.service("coordinator").attrs["NetworkSettings"]["Networks"]
        build = self.layout.build
        container = self.docker.containers.run(
            NODE_IMAGE,
            list(argv),
            detach=True,
            network=next(iter(networks)),
            labels={docker_api.PROJECT_LABEL: self.layout.project, "zcl.role": role},
            volumes={
                str(build / "mounts" / "runner"): {"bind": "/keys", "mode": "ro"},
                str(build / "events"): {"bind": "/events", "mode": "rw"},
            },
            environment={"COLUMNS": "100"},
        )
        self.started.append(container)
        return container

    def close(self) -> None:
        for container in self.started:
            try:
                container.remove(force=True)
            except docker_api.errors().APIError:
                pass  # already gone
        self.started.clear()
        self.docker.close()

    def compose(self, *args: str, quiet: bool = True, check: bool = True) -> int:
        """Run Compose on the project's files (the compose file and any override)."""
        files = [arg for path in self.layout.compose_files for arg in ("-f", str(path))]
        command = [*compose_command(), "-p", self.layout.project, *files, *args]
        quiet_output = subprocess.DEVNULL if quiet else None
        done = subprocess.run(command, stdout=quiet_output, stderr=quiet_output, check=False)
        if check and done.returncode != 0:
            raise CliError(f"{' '.join(command[:2])} {args[0]} failed (exit {done.returncode})")
        return done.returncode


def compose_command() -> list[str]:
    """Compose v2 (a docker plugin) where it is installed, else v1 (docker-compose)."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise CliError("neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed")


def size_of(path: Path) -> int:
    """Bytes in a file so far (0 if it is not there yet): where to start reading new events."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
