"""Minimal MDP/0.2 peers written straight from the spec's frame tables, for interoperability tests.

They share nothing with our client and worker code on purpose: if our coordinator and these
disagree, the coordinator is wrong. `delimited=True` speaks the MDP/0.1-style form with the
leading empty frame that older implementations still use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import zmq

from cluster_patterns import cli, processes
from cluster_patterns.coordinator import Config, Coordinator

WAIT_MS = 3000


class RawPeer:
    def __init__(self, ctx: cli.Ctx, endpoint: str, delimited: bool = False, name: bytes = b""):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if name:
            self.sock.routing_id = name
        self.sock.connect(endpoint)
        self.prefix = [b""] if delimited else []

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart([*self.prefix, *frames])

    def recv(self, timeout_ms: int = WAIT_MS) -> list[bytes]:
        """The next message, with the delimiter (if this peer uses it) checked and removed."""
        if not self.sock.poll(timeout_ms):
            raise TimeoutError(f"nothing within {timeout_ms} ms")
        frames = self.sock.recv_multipart()
        assert frames[: len(self.prefix)] == self.prefix, f"answered in the wrong form: {frames}"
        return frames[len(self.prefix) :]

    def recv_skipping_heartbeats(self, timeout_ms: int = WAIT_MS) -> list[bytes]:
        while True:
            frames = self.recv(timeout_ms)
            if frames != [b"MDPW02", b"\x05"]:
                return frames

    def close(self) -> None:
        self.sock.close(linger=0)


class RawClient(RawPeer):
    def request(self, service: bytes, *body: bytes) -> None:
        self.send(b"MDPC02", b"\x01", service, *body)


class RawWorker(RawPeer):
    def ready(self, service: bytes) -> None:
        self.send(b"MDPW02", b"\x01", service)

    def final(self, client: bytes, *body: bytes) -> None:
        self.send(b"MDPW02", b"\x04", client, b"", *body)

    def heartbeat(self) -> None:
        self.send(b"MDPW02", b"\x05")


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
