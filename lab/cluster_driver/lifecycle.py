"""`start`, `stop` and `logs`: the cluster brought up healthy (its keys laid out first), stopped
with its containers kept, and its services' recent output."""

from __future__ import annotations

import json
import sys

from zcl.errors import CliError
from zcl_lab import event_log, fleet
from zcl_lab.cluster_driver import key_mounts
from zcl_lab.cluster_driver.engine import Engine
from zcl_lab.cluster_driver.layout import (
    BARE_IMAGE,
    DEFAULT_WORKERS,
    NODE_IMAGE,
    Layout,
    say,
)


def workers_override(layout: Layout, count: int) -> dict[str, object] | None:
    """The nodes beyond the compose file's three, each its own service with its own mount."""
    if count <= DEFAULT_WORKERS:
        return None
    services = {}
    for n in range(DEFAULT_WORKERS + 1, count + 1):
        name = f"worker{n}"
        services[name] = {
            "extends": {
                "file": str(layout.docker_dir / "docker-compose.yml"),
                "service": "worker1",
            },
            "hostname": name,
            "environment": {"NODE_NAME": name},
            "volumes": [f"{layout.build}/mounts/{name}:/keys:ro"],
        }
    return {"services": services}


def start(engine: Engine, workers: int, *, bare: bool) -> None:
    layout = engine.layout
    if not engine.image_exists(NODE_IMAGE):
        raise CliError(f"no {NODE_IMAGE}: run build first")
    if bare and not engine.image_exists(BARE_IMAGE):
        raise CliError(f"no {BARE_IMAGE}: run build first")
    layout.events.parent.mkdir(parents=True, exist_ok=True)
    nodes = [f"worker{n}" for n in range(1, workers + 1)]
    key_mounts.ensure_keys(layout, engine, nodes)
    key_mounts.lay_out(layout, nodes, bare=bare)
    _write_override(layout, "workers.yml", workers_override(layout, workers))
    override = fleet.bare_override(nodes, layout.build.resolve()) if bare else None
    _write_override(layout, "bare.yml", override)
    engine.compose("up", "-d", "--no-build", "coordinator", "monitor", "collector")
    engine.wait_healthy("coordinator")
    engine.wait_healthy("collector")
    engine.compose("up", "-d", "--no-build", *nodes)
    say(f"waiting for {len(nodes)} node(s) to be healthy")
    for node in nodes:
        engine.wait_healthy(node)
    kind = "bare nodes" if bare else "nodes"
    event_log.record(layout.events, "cluster.started", f"{len(nodes)} {kind}")
    if bare:
        say(
            f"bare cluster up: coordinator, monitor, collector host, {' '.join(nodes)}"
            " (no agents: deploy)"
        )
    else:
        say(f"cluster up: coordinator, monitor, {' '.join(nodes)}")


def _write_override(layout: Layout, name: str, override: dict[str, object] | None) -> None:
    path = layout.build / name
    path.unlink(missing_ok=True)
    if override is not None:
        path.write_text(json.dumps(override, indent=2) + "\n")  # JSON is YAML too


def stop(engine: Engine) -> None:
    engine.compose("stop", check=False)
    event_log.record(engine.layout.events, "cluster.stopped", "all")
    say("stopped")


def logs(engine: Engine, service: str | None) -> None:
    if service:
        sys.stdout.buffer.write(engine.service(service).logs(tail=200))
        sys.stdout.flush()
    else:
        engine.compose("logs", "--tail", "50", quiet=False)
