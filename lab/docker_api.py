"""The lab's way to the Docker Engine: the Docker SDK, and the containers of one Compose project.

The SDK is a dev tool (the cluster driver runs on the host, never on a node), so it is imported
only by the lab modules that drive Docker. It is imported by name because mypy, run from the
repository, would take the docker/ folder for it; at run time the installed package comes first.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def client() -> Any:
    return importlib.import_module("docker").from_env()


def containers(project: str, *, stopped_too: bool = False) -> list[Any]:
    """The project's containers, in the natural order of their service names (worker2 before
    worker10)."""
    found = client().containers.list(
        all=stopped_too, filters={"label": f"{PROJECT_LABEL}={project}"}
    )
    return sorted(found, key=lambda c: natural(service_of(c)))


def service_of(container: Any) -> str:
    return str(container.labels.get(SERVICE_LABEL, container.name))


def natural(name: str) -> tuple[str, int]:
    digits = re.search(r"\d+$", name)
    return (name[: digits.start()], int(digits.group())) if digits else (name, 0)


def errors() -> Any:
    """The SDK's exception classes (docker.errors)."""
    return importlib.import_module("docker.errors")
