"""What step 02's programs share: endpoint parsing, one-line errors, roles that never leak."""

from __future__ import annotations

import argparse
import contextlib

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from cluster_patterns import processes
from zcl import cli
from zcl.errors import CliError

COORDINATOR = "cluster_patterns.coordinator"


def coordinator_args(endpoint: str) -> list[str]:
    return ["--endpoint", endpoint, "--events", processes.ANY_LOCAL_PORT, "--insecure"]


@pytest.mark.parametrize(
    "text",
    [
        "tcp://127.0.0.1:5555",
        "tcp://*:5555",
        "tcp://localhost:*",
        "tcp://[::1]:80",
        "ipc:///tmp/x.sock",
        "inproc://lesson",
    ],
)
def test_endpoint_accepts_what_libzmq_accepts(text: str) -> None:
    assert cli.endpoint(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost:5555",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:70000",
        "udp://127.0.0.1:5555",
        "tcp://:5555",
        "ipc://",
        "tcp://a b:1",
    ],
)
def test_endpoint_rejects_malformed(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid endpoint"):
        cli.endpoint(text)


@given(st.text(max_size=40))
def test_endpoint_never_raises_anything_but_a_usage_error(text: str) -> None:
    with contextlib.suppress(argparse.ArgumentTypeError):
        assert cli.endpoint(text) == text


@pytest.mark.parametrize("text", ["0", "-3", "x", "1.5", ""])
def test_positive_int_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.positive_int(text)


def test_parser_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser, roles = cli.command_parser("doc", prog="x")
    cli.add_command(roles, "server", lambda a: 0, "serve", endpoint="tcp://127.0.0.1:1")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["server", "--endpoint", "nonsense"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid endpoint 'nonsense'" in err


def test_run_main_turns_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser, roles = cli.command_parser("doc", prog="x")

    def fail(_: argparse.Namespace) -> int:
        raise CliError("the peer went away")

    cli.add_command(roles, "go", fail, "fail")
    assert cli.run_main(parser, ["go"]) == 1
    assert capsys.readouterr().err == "x: error: the peer went away\n"


def test_bind_reports_port_in_use() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as first, ctx.socket(zmq.ROUTER) as second:
        first.linger = second.linger = 0
        taken = cli.bind(first, processes.ANY_LOCAL_PORT)
        with pytest.raises(CliError, match=r"cannot bind .*Address already in use"):
            cli.bind(second, taken)


def test_roles_stop_every_child_on_exit() -> None:
    with processes.Roles(COORDINATOR) as roles:
        server = roles.spawn("coordinator", *coordinator_args(processes.ANY_LOCAL_PORT))
        assert server.endpoint.startswith("tcp://127.0.0.1:")
        assert server.process.poll() is None
    assert server.process.returncode == 0  # stopped by SIGTERM, which the coordinator drains on


def test_spawn_fails_clearly_when_a_role_never_gets_ready() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as holder:
        holder.linger = 0
        taken = cli.bind(holder, processes.ANY_LOCAL_PORT)
        with (
            processes.Roles(COORDINATOR) as roles,
            pytest.raises(CliError, match=r"did not become ready.*Address already"),
        ):
            roles.spawn("coordinator", *coordinator_args(taken))


def test_peer_watch_times_out_without_peers() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as sock:
        sock.linger = 0
        cli.bind(sock, processes.ANY_LOCAL_PORT)
        with processes.PeerWatch(sock) as peers, pytest.raises(CliError, match="0 of 1"):
            peers.wait(1, timeout_s=0.2)


def test_role_thread_reraises_in_the_caller() -> None:
    def boom() -> None:
        raise ValueError("inside the role")

    role = processes.RoleThread(boom)
    role.start()
    with pytest.raises(ValueError, match="inside the role"):
        role.join(timeout=5)
