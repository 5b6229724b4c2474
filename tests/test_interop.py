"""Interop both ways: our worker and client can speak the delimited framing (a leading empty
frame), so they work with brokers that need it, such as majortomo's; the spec's stays default."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import zmq

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.benchmark import free_endpoint
from cluster_patterns.client import MdpClient
from zcl import cli

# majortomo 0.2.0's own client dialect: REQUEST coded 0x02 (see benchmark.py)
MAJORTOMO_REQUEST = [b"", mdp.CLIENT, b"\x02", b"echo"]


@pytest.fixture
def ctx() -> Iterator[cli.Ctx]:
    with zmq.Context() as context:
        context.linger = 0
        yield context


def ask_majortomo(ctx: cli.Ctx, framing: str, timeout_ms: int) -> list[bytes] | None:
    """Our worker (with `framing`) behind majortomo's broker; one echo request through it."""
    endpoint = free_endpoint()
    with processes.Roles("cluster_patterns.benchmark") as roles:
        roles.spawn("majortomo", "majortomo", "--endpoint", endpoint)
        worker_args = ["--coordinator", endpoint, "--service", "echo", "--framing", framing]
        roles.spawn("worker", *worker_args, module="cluster_patterns.worker")
        with ctx.socket(zmq.DEALER) as client:
            client.connect(endpoint)
            client.send_multipart([*MAJORTOMO_REQUEST, b"request-id", b"through majortomo"])
            return client.recv_multipart() if client.poll(timeout_ms) else None


@pytest.mark.timeout(60)
def test_our_worker_with_delimited_framing_answers_behind_majortomo(ctx: cli.Ctx) -> None:
    reply = ask_majortomo(ctx, "delimited", timeout_ms=10_000)
    assert reply is not None, "majortomo's broker never passed our worker's answer back"
    assert reply[-2:] == [b"request-id", b"through majortomo"]


@pytest.mark.timeout(60)
def test_in_the_spec_framing_majortomo_cannot_use_our_worker(ctx: cli.Ctx) -> None:
    """The control: the framing option is what makes the difference."""
    assert ask_majortomo(ctx, "spec", timeout_ms=2_000) is None


def test_our_client_with_delimited_framing_sends_and_accepts_the_delimited_form(
    ctx: cli.Ctx,
) -> None:
    with ctx.socket(zmq.ROUTER) as broker:
        where = cli.bind(broker, processes.ANY_LOCAL_PORT)
        client = MdpClient(ctx, where, timeout_s=5, framing="delimited")
        asked = processes.RoleThread(client.request, b"echo", b"id-1", b"hello")
        asked.start()
        assert broker.poll(5000)
        identity, *request = broker.recv_multipart()
        assert request == [b"", mdp.CLIENT, mdp.C_REQUEST, b"echo", b"id-1", b"hello"]
        broker.send_multipart(mdp.to_client(identity, True, mdp.C_FINAL, b"echo", b"id-1", b"hi"))
        asked.join(timeout=10)
        client.close()
    assert asked.result == [b"id-1", b"hi"]


def test_delimited_framing_leads_with_an_empty_frame() -> None:
    assert mdp.from_client(b"echo", b"x", delimited=True)[:2] == [b"", mdp.CLIENT]
    assert mdp.from_worker(mdp.W_READY, b"echo", delimited=True)[:2] == [b"", mdp.WORKER]
    assert mdp.from_client(b"echo", b"x")[0] == mdp.CLIENT  # the spec's form by default


@pytest.mark.timeout(60)
def test_the_spec_written_worker_and_client_talk_through_our_coordinator() -> None:
    """mdp_minimal, the 02 page's first read, really is MDP: our coordinator serves it."""
    minimal = [sys.executable, "-m", "cluster_patterns.mdp_minimal"]
    with processes.Roles("cluster_patterns.coordinator") as roles:
        endpoint = free_endpoint()
        roles.spawn(
            "coordinator", "--endpoint", endpoint, "--events", free_endpoint(), "--insecure"
        )
        worker = subprocess.Popen(
            [*minimal, "worker", "--endpoint", endpoint], stdout=subprocess.PIPE
        )
        try:
            done = subprocess.run(
                [*minimal, "client", "--endpoint", endpoint, "hello", "world"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        finally:
            worker.kill()
            worker.wait()
            assert worker.stdout is not None
            worker.stdout.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[b'hello', b'world']"
