"""Both Majordomo versions on real sockets: peers written from RFC 7 (MDP/0.1) and RFC 18
(MDP/0.2), cluster_patterns.mdp_minimal, against our coordinator, worker and client, both ways,
1,000 requests each; our worker and client behind an RFC 7 broker; and MDP/0.1 workers, beating
every 2.5 s as RFC 7 suggests, SIGKILLed and SIGSTOPped behind our coordinator with every
request still answered once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq

from cluster_patterns import processes
from cluster_patterns.benchmark import free_endpoint
from cluster_patterns.client import MdpClient
from cluster_patterns.mdp_minimal import HEARTBEAT_S, MDP01, MDP02, RawClient, Version
from tests.mdp_peers import running_coordinator
from zcl import cli

REQUESTS = 1000
MINIMAL = [sys.executable, "-m", "cluster_patterns.mdp_minimal"]


@pytest.fixture
def ctx() -> Iterator[cli.Ctx]:
    with zmq.Context() as context:
        context.linger = 0
        yield context


@contextmanager
def minimal(role: str, endpoint: str, version: Version) -> Iterator[subprocess.Popen[bytes]]:
    """A spec-written peer (worker or broker) as a process, killed and reaped on exit."""
    process = subprocess.Popen(
        [*MINIMAL, role, "--endpoint", endpoint, "--mdp", version.name],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def joined(ctx: cli.Ctx, events: str) -> zmq.Socket[bytes]:
    """A subscriber to the coordinator's events, connected before any worker: call
    `wait_joined` on it once the workers are started."""
    sub = ctx.socket(zmq.SUB)
    sub.connect(events)
    sub.subscribe(b"worker.joined")
    sub.subscribe(b"stats")
    assert sub.poll(5000), "the coordinator's events never came"  # a stats snapshot: live
    return sub


def wait_joined(sub: zmq.Socket[bytes], count: int) -> None:
    seen = 0
    while seen < count:
        assert sub.poll(15_000), f"{seen} of {count} workers registered"
        seen += sub.recv_multipart()[0] == b"worker.joined"
    sub.close()


def spec_client_round(ctx: cli.Ctx, endpoint: str, version: Version, count: int) -> Counter[bytes]:
    """`count` requests from a spec-written client, all sent at once: how often each body came
    back (the broker queues what its workers cannot take yet)."""
    client = RawClient(ctx, endpoint, version=version)
    try:
        for n in range(count):
            client.request(b"echo", b"%d" % n)
        answers: Counter[bytes] = Counter()
        while answers.total() < count:
            final, service, body = client.reply(timeout_ms=30_000)
            assert final and service == b"echo"
            answers[body[0]] += 1
        return answers
    finally:
        client.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("version", [MDP01, MDP02], ids=["MDP-0.1", "MDP-0.2"])
def test_spec_written_peers_of_each_version_through_our_coordinator(
    ctx: cli.Ctx, version: Version
) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        sub = joined(ctx, coordinator.events_endpoint)
        with minimal("worker", where, version):
            wait_joined(sub, 1)
            answers = spec_client_round(ctx, where, version, REQUESTS)
    assert answers == Counter(b"%d" % n for n in range(REQUESTS))  # each once


@pytest.mark.timeout(120)
def test_an_mdp01_client_is_served_by_our_mdp02_worker(ctx: cli.Ctx) -> None:
    with processes.Roles("cluster_patterns.worker") as roles, running_coordinator(ctx) as coord:
        where = coord.endpoints[0]
        sub = joined(ctx, coord.events_endpoint)
        roles.spawn("worker", "--coordinator", where, "--service", "echo")
        wait_joined(sub, 1)
        answers = spec_client_round(ctx, where, MDP01, REQUESTS)
    assert answers == Counter(b"%d" % n for n in range(REQUESTS))


@pytest.mark.timeout(120)
def test_our_mdp02_client_is_served_by_an_mdp01_worker(ctx: cli.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        sub = joined(ctx, coordinator.events_endpoint)
        with minimal("worker", where, MDP01):
            wait_joined(sub, 1)
            client = MdpClient(ctx, where, timeout_s=10.0, retries=0)
            report = client.batch(b"echo", [[b"x%d" % n] for n in range(REQUESTS)], in_flight=64)
            client.close()
    assert len(report.outcomes) == REQUESTS and not report.missing and not report.duplicates
    assert all(o.body[1:] == [b"x" + cid] for cid, o in report.outcomes.items())


@pytest.mark.timeout(120)
def test_our_worker_and_client_speaking_mdp01_behind_an_rfc7_broker(ctx: cli.Ctx) -> None:
    endpoint = free_endpoint()
    with (
        minimal("broker", endpoint, MDP01),
        processes.Roles("cluster_patterns.worker") as roles,
    ):
        roles.spawn("worker", "--coordinator", endpoint, "--service", "echo", "--framing", "0.1")
        client = MdpClient(ctx, endpoint, timeout_s=10.0, retries=0, framing="0.1")
        try:
            # the first answer says the worker is registered (the broker has no MMI)
            assert client.request(b"echo", b"first", b"hello") == [b"first", b"hello"]
            report = client.batch(b"echo", [[b"y%d" % n] for n in range(REQUESTS)], in_flight=64)
        finally:
            client.close()
    assert len(report.outcomes) == REQUESTS and not report.missing and not report.duplicates


@pytest.mark.timeout(180)
def test_mdp01_workers_killed_and_frozen_behind_our_coordinator_lose_no_request(
    ctx: cli.Ctx,
) -> None:
    """Three RFC 7 workers beating every 2.5 s. A is SIGKILLed and B SIGSTOPped, each while
    requests keep coming: the coordinator declares each dead (A's closed connection at once,
    B's silent one by ZMTP heartbeats) and gives what it held to C. Requests go on for four
    of RFC 7's heartbeat intervals, so C's slower rhythm is lived with, never taken for a
    death. Every request is answered exactly once, with no client retry."""
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        sub = joined(ctx, coordinator.events_endpoint)
        deaths = ctx.socket(zmq.SUB)
        deaths.connect(coordinator.events_endpoint)
        deaths.subscribe(b"worker.dead")
        with (
            minimal("worker", where, MDP01) as a,
            minimal("worker", where, MDP01) as b,
            minimal("worker", where, MDP01),
        ):
            wait_joined(sub, 3)
            began = time.monotonic()
            answered = spec_client_round(ctx, where, MDP01, 100)
            a.send_signal(signal.SIGKILL)
            a.wait()
            answered += spec_client_round(ctx, where, MDP01, 100)
            b.send_signal(signal.SIGSTOP)
            rounds = 2
            while rounds < 3 or time.monotonic() - began < 4 * HEARTBEAT_S:
                answered += spec_client_round(ctx, where, MDP01, 100)
                rounds += 1
            dead = []  # read while C still runs: its end, below, is no death to count
            while deaths.poll(500):
                dead.append(json.loads(deaths.recv_multipart()[1])["worker"])
        deaths.close()
    assert answered == Counter({b"%d" % n: rounds for n in range(100)}), "lost or doubled"
    assert len(dead) == len(set(dead)) == 2, dead  # A and B, each once; never C
