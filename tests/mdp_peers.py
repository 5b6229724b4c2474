"""The spec-written MDP peers (cluster_patterns.mdp_minimal) and a coordinator on a thread, for
interoperability tests.

The peers share nothing with our client and worker code on purpose: if our coordinator and
they disagree, the coordinator is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cluster_patterns import processes
from cluster_patterns.coordinator import Config, Coordinator
from cluster_patterns.mdp_minimal import RawClient, RawPeer, RawWorker
from zcl import cli

__all__ = ["RawClient", "RawPeer", "RawWorker", "running_coordinator"]


@contextmanager
def running_coordinator(
    ctx: cli.Ctx, config: Config | None = None, worker_endpoint: str | None = None
) -> Iterator[Coordinator]:
    """A coordinator on free ports, run on a thread, stopped and closed on exit."""
    coordinator = Coordinator(
        ctx, processes.ANY_LOCAL_PORT, processes.ANY_LOCAL_PORT, worker_endpoint, config=config
    )
    thread = processes.RoleThread(coordinator.run, name="coordinator")
    thread.start()
    try:
        yield coordinator
    finally:
        coordinator.stop.set()
        thread.join(timeout=10)
        for sock in (*coordinator.routers.values(), coordinator.events):
            sock.close(linger=0)
