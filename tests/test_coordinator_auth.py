"""Step 02's coordinator as an attacker with a socket finds it (issue 14, finding 3): no peer can
take a live worker's name, and with --keys only CurveZMQ keys in its authorized_keys get in."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.benchmark import free_endpoint
from cluster_patterns.client import MdpClient
from zcl import cli, curve, keys

COORDINATOR = "cluster_patterns.coordinator"


@pytest.fixture
def ctx() -> Iterator[cli.Ctx]:
    with zmq.Context() as context:
        context.linger = 0
        yield context


@pytest.fixture
def mdp_keys(tmp_path: Path) -> Path:
    """One key domain for step 02: the coordinator is its server; workers and clients connect."""
    keydir = tmp_path / "mdp-keys"
    keys.generate(keydir, nodes=["coordinator"], controllers=["worker1", "client", "outsider"])
    keys.revoke_controller(keydir, "outsider")  # it pins the coordinator but is not trusted
    return keydir


def client_keys(keydir: Path, name: str) -> curve.ControllerKeys:
    return curve.load_controller_keys(keys.controller_dir(keydir, name))


def connect_and_handshake(sock: cli.Sock, endpoint: str, timeout_ms: int = 10_000) -> int:
    """Connect, and return the first handshake's outcome (succeeded or failed), read from a
    monitor attached before the connection so the event cannot be missed."""
    wanted = (
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    monitor = sock.get_monitor_socket(wanted)
    sock.connect(endpoint)
    try:
        if not monitor.poll(timeout_ms):
            raise TimeoutError("no handshake within the timeout")
        return int(recv_monitor_message(monitor)["event"])
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


@contextlib.contextmanager
def keyed_coordinator(keydir: Path, *options: str) -> Iterator[tuple[str, str]]:
    """A coordinator with keydir's coordinator keys and worker1 serving echo with its own
    key; (the peers' endpoint, the events endpoint)."""
    endpoint, events = free_endpoint(), free_endpoint()
    server = str(keys.node_dir(keydir, "coordinator"))
    with processes.Roles(COORDINATOR) as roles:
        roles.spawn(
            "coordinator", "--endpoint", endpoint, "--events", events, "--keys", server, *options
        )
        roles.spawn(
            "worker",
            *("--coordinator", endpoint, "--name", "worker1"),
            *("--keys", str(keys.controller_dir(keydir, "worker1"))),
            module="cluster_patterns.worker",
        )
        yield endpoint, events


@pytest.mark.timeout(60)
def test_a_new_connection_cannot_take_a_live_workers_name(ctx: cli.Ctx) -> None:
    """A DEALER calling itself worker1 used to take over the name (ROUTER_HANDOVER) and receive,
    and answer, the next task meant for the real worker."""
    endpoint = free_endpoint()
    with processes.Roles(COORDINATOR) as roles:
        roles.spawn(
            "coordinator", "--endpoint", endpoint, "--events", free_endpoint(), "--insecure"
        )
        worker_args = ["--coordinator", endpoint, "--name", "worker1"]
        roles.spawn("worker", *worker_args, module="cluster_patterns.worker")
        client = MdpClient(ctx, endpoint, timeout_s=10, retries=0)
        try:
            assert client.request(b"echo@worker1", b"before") == [b"before"]
            with ctx.socket(zmq.DEALER) as thief:
                thief.linger = 0
                thief.routing_id = b"worker1"
                assert connect_and_handshake(thief, endpoint) == zmq.EVENT_HANDSHAKE_SUCCEEDED
                thief.send_multipart(mdp.from_worker(mdp.W_READY, b"echo"))
                for n in range(5):
                    body = b"after %d" % n
                    assert client.request(b"echo@worker1", body) == [body]
                assert thief.poll(0) == 0, (
                    f"worker1's traffic reached the thief: {thief.recv_multipart()}"
                )
        finally:
            client.close()


@pytest.mark.timeout(60)
def test_with_keys_only_authorized_peers_get_in(ctx: cli.Ctx, mdp_keys: Path) -> None:
    with keyed_coordinator(mdp_keys) as (endpoint, events):
        trusted = MdpClient(
            ctx, endpoint, timeout_s=10, retries=0, keys=client_keys(mdp_keys, "client")
        )
        try:
            assert trusted.request(b"echo", b"signed") == [b"signed"]
        finally:
            trusted.close()
        with ctx.socket(zmq.DEALER) as plain:  # no CurveZMQ at all
            plain.linger = 0
            assert connect_and_handshake(plain, endpoint) != zmq.EVENT_HANDSHAKE_SUCCEEDED
        for where in (endpoint, events):
            with ctx.socket(zmq.DEALER if where == endpoint else zmq.SUB) as outsider:
                outsider.linger = 0
                curve.connect_curve(outsider, client_keys(mdp_keys, "outsider"), "coordinator")
                outcome = connect_and_handshake(outsider, where)
                assert outcome == zmq.EVENT_HANDSHAKE_FAILED_AUTH, where


def test_the_coordinator_will_not_start_open_unless_told_insecure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", COORDINATOR, "--endpoint", "tcp://127.0.0.1:*"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "--insecure" in done.stderr, done.stderr


# -- roles (issue 23, class 4) ------------------------------------------------------------------


@pytest.fixture
def role_keys(tmp_path: Path) -> Path:
    """worker1 may only serve, client only ask, watcher only watch; each on the coordinator."""
    keydir = tmp_path / "mdp-keys"
    names = ["worker1", "client", "watcher"]
    keys.generate(keydir, nodes=["coordinator"], controllers=names)
    for name, role in zip(names, ("worker", "client", "monitor"), strict=True):
        keys.set_roles(keydir, name, [role], on="coordinator")
    return keydir


def test_keys_act_only_in_their_roles(ctx: cli.Ctx, role_keys: Path) -> None:
    """A client's key sent READY and took half of the other client's tasks; a worker's key
    read every event."""
    with keyed_coordinator(role_keys) as (endpoint, events):
        with ctx.socket(zmq.DEALER) as thief:
            thief.linger = 0
            curve.connect_curve(thief, client_keys(role_keys, "client"), "coordinator")
            thief.connect(endpoint)
            thief.send_multipart([b"", mdp.WORKER, mdp.W_READY, b"echo"])
            assert thief.poll(10_000), "no answer to the client key's READY"
            assert thief.recv_multipart()[1:3] == [mdp.WORKER, mdp.W_DISCONNECT]
            asking = MdpClient(
                ctx, endpoint, timeout_s=10, retries=0, keys=client_keys(role_keys, "client")
            )
            try:
                for n in range(4):  # each served by worker1, none handed to the thief
                    assert asking.request(b"echo", b"%d" % n) == [b"%d" % n]
            finally:
                asking.close()
            assert not thief.poll(0), "the client key received a task"
        for name, outcome in (("worker1", zmq.EVENT_HANDSHAKE_FAILED_AUTH),
                              ("watcher", zmq.EVENT_HANDSHAKE_SUCCEEDED)):  # fmt: skip
            with ctx.socket(zmq.SUB) as sub:
                sub.linger = 0
                curve.connect_curve(sub, client_keys(role_keys, name), "coordinator")
                assert connect_and_handshake(sub, events) == outcome, name


def test_a_worker_whose_key_is_revoked_is_dropped_while_connected(
    ctx: cli.Ctx, role_keys: Path
) -> None:
    """It used to keep receiving tasks until it reconnected."""
    with keyed_coordinator(role_keys, "--service-timeout", "1") as (endpoint, _):
        asking = MdpClient(
            ctx, endpoint, timeout_s=10, retries=0, keys=client_keys(role_keys, "client")
        )
        try:
            assert asking.request(b"echo", b"before") == [b"before"]
            assert keys.revoke_controller(role_keys, "worker1") == 1
            answers = [asking.request(b"echo", b"after") for _ in range(10)]
        finally:
            asking.close()
    assert answers[-1] != [b"after"], "the revoked worker still serves"
    assert mdp.error_reason(answers[-1]) == "no worker for echo within 1s", answers[-1]
