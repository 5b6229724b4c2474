"""client: Lazy Pirate gives up clearly; a batch keeps exactly one result per request."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import zmq

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.client import MdpClient
from tests.mdp_peers import running_coordinator
from zcl import cli
from zcl.errors import CliError


@pytest.fixture
def ctx() -> Iterator[cli.Ctx]:
    with zmq.Context() as context:
        context.linger = 0
        yield context


def test_request_gives_up_with_a_clear_error(ctx: cli.Ctx) -> None:
    with ctx.socket(zmq.ROUTER) as silent:
        where = cli.bind(silent, processes.ANY_LOCAL_PORT)
        client = MdpClient(ctx, where, timeout_s=0.2, retries=1)
        with pytest.raises(CliError, match="after 2 attempts"):
            client.request(b"echo", b"x")
        client.close()


def test_batch_drops_duplicate_replies(ctx: cli.Ctx) -> None:
    with ctx.socket(zmq.ROUTER) as broker:
        broker.linger = 0
        where = cli.bind(broker, processes.ANY_LOCAL_PORT)
        client = MdpClient(ctx, where, timeout_s=5)

        def answer_everything_twice() -> None:
            for _ in range(10):
                assert broker.poll(5000)
                identity, _, _, service, *body = broker.recv_multipart()
                for _ in range(2):
                    broker.send_multipart(
                        mdp.to_client(identity, False, mdp.C_FINAL, service, *body)
                    )

        server = processes.RoleThread(answer_everything_twice)
        server.start()
        report = client.batch(b"echo", [[b"payload"]] * 10, in_flight=3)
        server.join(timeout=10)
        client.close()
    assert len(report.outcomes) == 10
    assert report.duplicates >= 7  # the late twin of every request but the last few in flight
    assert all(o.body[1] == b"payload" for o in report.outcomes.values())


def test_batch_resends_what_was_never_answered(ctx: cli.Ctx) -> None:
    with ctx.socket(zmq.ROUTER) as broker:
        broker.linger = 0
        client = MdpClient(
            ctx, cli.bind(broker, processes.ANY_LOCAL_PORT), timeout_s=0.3, retries=2
        )
        batch = processes.RoleThread(client.batch, b"echo", [[b"x"]], 1)
        batch.start()
        assert broker.poll(5000)
        broker.recv_multipart()  # the first copy is lost, as with a coordinator that died
        assert broker.poll(5000)
        identity, _, _, service, *body = broker.recv_multipart()
        broker.send_multipart(mdp.to_client(identity, False, mdp.C_FINAL, service, *body))
        batch.join(timeout=10)
        client.close()
    assert batch.result.resent == 1 and len(batch.result.outcomes) == 1


def test_command_line_against_a_live_cluster(ctx: cli.Ctx) -> None:
    with (
        running_coordinator(ctx) as coordinator,
        processes.Roles("cluster_patterns.worker") as roles,
    ):
        where = coordinator.endpoints[0]
        roles.spawn("worker", "--coordinator", where, "--service", "echo")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cluster_patterns.client",
                "--coordinator",
                where,
                "--count",
                "200",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["completed"] == 200 and summary["errors"] == 0 and summary["duplicates"] == 0


def test_bad_args_json_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cluster_patterns.client", "--service", "sleep", "--args", "{oops"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "not JSON" in done.stderr
