"""The node agent against requests our executor would never send (issue 14, finding 9): every one
gets an answer, none is misread, and the keys it runs with are private from their first byte."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from cluster_patterns import processes
from tests.agents import RawController, raw_controller, running_agent
from zcl import agent_wire as wire
from zcl import cli, keys


@pytest.fixture
def controller(keydir: Path) -> Iterator[RawController]:
    with raw_controller(keydir) as raw:
        yield raw


def ask(controller: RawController, operation: bytes, body: dict[str, Any]) -> wire.Reply:
    controller.request(b"probe", operation, body)
    return controller.reply(timeout_ms=10_000)


@pytest.mark.parametrize("timeout_s", [float("nan"), float("inf"), -1.0, 0])
def test_a_timeout_that_is_no_positive_finite_number_is_refused(
    controller: RawController, timeout_s: float
) -> None:
    """NaN passed the old `<= 0` check and the command was killed the moment it started."""
    reply = ask(controller, wire.RUN, {"command": "echo hi", "timeout_s": timeout_s})
    assert reply.kind == wire.ERROR and reply.body()["code"] == "bad-field"


@pytest.mark.parametrize("operation", [wire.GET, wire.PUT])
def test_a_path_with_a_nul_gets_an_answer(controller: RawController, operation: bytes) -> None:
    """It used to get none: the OS call raised ValueError inside a task nobody awaited."""
    body: dict[str, Any] = {"path": "/tmp/a\x00b"}
    if operation == wire.PUT:
        body["data"] = b"x"
    reply = ask(controller, operation, body)
    assert reply.kind == wire.ERROR and reply.body()["code"] == "bad-path"
    assert ask(controller, wire.PING, {"ids": []}).kind == wire.PONG  # and it still serves


def test_a_secret_key_is_private_from_the_moment_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not world-readable and then chmodded: with chmod gone, the secret must still be 0600."""
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    before = os.umask(0)  # the most careless operator's umask
    try:
        keys.generate(tmp_path / "keys", nodes=["node1"], controllers=["runner"])
    finally:
        os.umask(before)
    secrets = list((tmp_path / "keys").rglob("*.key_secret"))
    assert len(secrets) == 2
    for secret in secrets:
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_a_refused_key_is_named_in_the_log(keydir: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    keys.add_controller(stranger, "stranger")  # a key pair the agent never heard of
    them = keys.load_controller_keys(keys.controller_dir(stranger, "stranger"))
    runner = keys.load_controller_keys(keys.controller_dir(keydir, "runner"))
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        sock: cli.Sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_publickey, sock.curve_secretkey = them.public, them.secret
        sock.curve_serverkey = runner.agent_key("node1")
        sock.connect(agent.endpoint)
        sock.send_multipart(wire.request(b"x", wire.PING, {"ids": []}))
        line = agent.wait_for_output(lambda text: "refused controller key" in text, 10)
        sock.close()
    assert line is not None and them.public.decode() in line
    assert "from 127.0.0.1" in line  # and where it came from


def test_the_collector_and_the_coordinator_name_a_refused_key_and_its_address_too(
    tmp_path: Path,
) -> None:
    servers = tmp_path / "keys"
    keys.generate(servers, nodes=["collector", "coordinator"], controllers=["stranger"])
    keys.revoke_controller(servers, "stranger")
    them = keys.load_controller_keys(keys.controller_dir(servers, "stranger"))
    for name, module, args in (
        ("collector", "zcl.journal_collector", ["--path", str(tmp_path / "j")]),
        ("coordinator", "cluster_patterns.coordinator", ["--events", "tcp://127.0.0.1:*"]),
    ):
        bind_option = "--bind" if name == "collector" else "--endpoint"
        key_args = ["--keys", str(keys.node_dir(servers, name))]
        with processes.Roles(module) as roles, zmq.Context() as ctx:
            server = roles.spawn(name, *args, *key_args, bind_option, "tcp://127.0.0.1:*")
            sock: cli.Sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.curve_publickey, sock.curve_secretkey = them.public, them.secret
            sock.curve_serverkey = them.agent_key(name)
            sock.connect(server.endpoint.split(" ")[0])
            line = server.wait_for_output(lambda text: "refused controller key" in text, 10)
            sock.close()
        assert line is not None and them.public.decode() in line and "from 127.0.0.1" in line


# -- limits that hold on every path (issue 14, finding 6 in part) -------------------------------


def test_file_operations_and_sysinfo_count_against_max_concurrent(
    keydir: Path, tmp_path: Path
) -> None:
    """sysinfo, put and get used to run outside the cap: 248 shells at once with a cap of 4."""
    with (
        running_agent(keydir, "--max-concurrent", "1", "--file-root", str(tmp_path)) as agent,
        zmq.Context() as ctx,
    ):
        raw = RawController(ctx, agent.endpoint, keydir)
        raw.request(b"long", wire.RUN, {"command": "sleep 30", "timeout_s": 60})
        for operation, body in (
            (wire.SYSINFO, {}),
            (wire.GET, {"path": str(tmp_path / "never-written")}),
            (wire.PUT, {"path": str(tmp_path / "never-written"), "data": b"x"}),
        ):
            reply = ask(raw, operation, body)
            assert reply.kind == wire.ERROR and reply.body()["code"] == "busy", operation
        raw.request(b"stop", wire.CANCEL, {"target": b"long"})
        raw.sock.close(linger=0)
    assert not (tmp_path / "never-written").exists()


def test_a_get_on_a_fifo_is_refused_at_once_and_blocks_nothing(
    keydir: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with running_agent(keydir, "--file-root", str(tmp_path)) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        reply = ask(raw, wire.GET, {"path": str(fifo)})
        assert reply.kind == wire.ERROR and "not a regular file" in reply.body()["reason"]
        (tmp_path / "plain").write_bytes(b"fine")
        assert ask(raw, wire.GET, {"path": str(tmp_path / "plain")}).body()["data"] == b"fine"
        raw.sock.close(linger=0)
        agent.kill(signal.SIGTERM)  # and it can still stop
        assert agent.process.returncode == 0


def test_out_of_descriptors_every_command_is_answered_and_none_leaks(keydir: Path) -> None:
    """At the descriptor limit a pipe failed outside the spawn's clean-up: the first pair
    leaked and the request got no proper answer."""
    with running_agent(keydir, "--warm-shells", "0") as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        assert ask(raw, wire.RUN, {"command": "true"}).kind == wire.DONE  # connected, settled
        fd_folder = Path(f"/proc/{agent.process.pid}/fd")
        baseline = len(os.listdir(fd_folder))
        _, hard = resource.prlimit(agent.process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(agent.process.pid, resource.RLIMIT_NOFILE, (baseline + 7, hard))
        ids = [b"r%d" % n for n in range(8)]
        for request_id in ids:
            raw.request(request_id, wire.RUN, {"command": "sleep 1", "timeout_s": 30})
        answers: dict[bytes, wire.Reply] = {}
        while len(answers) < len(ids):
            reply = raw.reply(timeout_ms=20_000)
            answers[reply.request_id] = reply
        codes = ["done" if r.kind == wire.DONE else r.body()["code"] for r in answers.values()]
        assert "spawn-failed" in codes and set(codes) <= {"done", "spawn-failed"}, codes
        resource.prlimit(agent.process.pid, resource.RLIMIT_NOFILE, (hard, hard))
        assert ask(raw, wire.RUN, {"command": "echo fine"}).frames[1] == b"fine\n"
        assert len(os.listdir(fd_folder)) == baseline
        raw.sock.close(linger=0)


# -- idle connections that never authenticate (issue 14, finding 6) -----------------------------


def open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


DAEMONS = {
    "agent": ("zcl.agent.node_agent", ["--insecure", "--bind"]),
    "collector": ("zcl.journal_collector", ["--insecure", "--bind"]),
    "coordinator": (
        "cluster_patterns.coordinator",
        ["--insecure", "--events", "tcp://127.0.0.1:*", "--endpoint"],
    ),
}


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_a_daemon_raises_its_open_file_limit_to_what_it_may(tmp_path: Path, daemon: str) -> None:
    """With the usual soft limit (1,024, or 256 on the box that found it) a few hundred idle
    connections took every descriptor and an authorized controller could not get in."""
    module, args = DAEMONS[daemon]
    if daemon == "collector":
        args = [*args[:1], "--path", str(tmp_path / "j.jsonl"), *args[1:]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with processes.Roles(module) as roles:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # what the child inherits
        try:
            child = roles.spawn(daemon, *args, "tcp://127.0.0.1:*")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert open_file_limit(child.process.pid) == hard


def test_a_connection_that_never_authenticates_is_closed_within_seconds(keydir: Path) -> None:
    """libzmq's default gives a silent connection 30 s to finish its handshake; 300 of them
    held 300 descriptors that long, again and again."""
    with running_agent(keydir) as agent:
        port = int(agent.endpoint.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(20)]
        try:
            for conn in idle:  # the agent's greeting, then nothing from us, then end of file
                with contextlib.suppress(ConnectionResetError):
                    while conn.recv(4096):
                        pass
        finally:
            for conn in idle:
                conn.close()
