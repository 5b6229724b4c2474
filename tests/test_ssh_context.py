"""The SSH baseline against a real sshd, and side by side with the ZeroMQ executor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.agents import executor, running_agent
from zcl.errors import CommandTimeoutError, RemoteError, TransportError
from zcl.executor_options import SshExecutorOptions
from zcl.ssh_context import NodeExecutorSSH
from zcl_lab.openssh_server import OpenSshServer, free_loopback_port

SAME_COMMANDS = [
    "true",
    "exit 7",
    "echo out; echo err >&2",
    r"printf '\377\376\000tail'",
    ":",
    "cd /nonexistent-dir",
    "no-such-command-anywhere",
    "kill -9 $$",
    "seq 1 20000",
    "echo $ZCL_VALUE; pwd",
    "if then fi",
]


@pytest.mark.asyncio
async def test_both_executors_return_the_same_results(sshd: OpenSshServer, keydir: Path) -> None:
    async with NodeExecutorSSH.for_node(sshd.node("node1")) as over_ssh:
        options = {"env": {"ZCL_VALUE": "spaces and 'quotes'"}, "cwd": "/tmp"}
        with running_agent(keydir) as agent:
            async with executor(agent.endpoint, keydir) as over_zmq:
                for command in SAME_COMMANDS:
                    ssh_result, zmq_result = await asyncio.gather(
                        over_ssh.run(command, **options),  # type: ignore[arg-type]
                        over_zmq.run(command, **options),  # type: ignore[arg-type]
                    )
                    assert (zmq_result.exit_status, zmq_result.stdout, zmq_result.stderr) == (
                        ssh_result.exit_status,
                        ssh_result.stdout,
                        ssh_result.stderr,
                    ), command


@pytest.mark.asyncio
async def test_one_connection_carries_every_command(sshd: OpenSshServer) -> None:
    async with NodeExecutorSSH.for_node(sshd.node("node1")) as runner:
        results = await asyncio.gather(*(runner.run(f"echo {n}") for n in range(40)))
        first = runner.connections[None]
        await runner.run("true")
        assert runner.connections == {None: first}
        assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(40)]


@pytest.mark.asyncio
async def test_fresh_connections_work_too(sshd: OpenSshServer) -> None:
    async with NodeExecutorSSH.for_node(
        sshd.node("node1"), SshExecutorOptions(persistent=False)
    ) as runner:
        assert (await runner.run("echo fresh")).stdout == b"fresh\n"
        assert runner.connections == {}


@pytest.mark.asyncio
async def test_timeouts_streams_and_files(sshd: OpenSshServer, shared_dir: Path) -> None:
    async with NodeExecutorSSH.for_node(sshd.node("node1")) as runner:
        with pytest.raises(CommandTimeoutError):
            await runner.run("sleep 30", timeout_s=0.5)
        chunks: list[tuple[str, bytes]] = []
        streamed = await runner.run(
            "echo a; echo b >&2", on_output=lambda s, d: chunks.append((s, d))
        )
        assert sorted(chunks) == [("stderr", b"b\n"), ("stdout", b"a\n")]
        assert streamed.stdout == b"a\n"
        source = shared_dir / "source"
        source.write_bytes(b"\x00payload\xff")
        await runner.put_file(source, str(shared_dir / "remote"))
        await runner.get_file(str(shared_dir / "remote"), shared_dir / "back")
        assert (shared_dir / "back").read_bytes() == source.read_bytes()
        with pytest.raises(RemoteError, match="get /nonexistent"):
            await runner.get_file("/nonexistent", shared_dir / "never")


@pytest.mark.asyncio
async def test_an_unreachable_node_is_a_transport_error(sshd: OpenSshServer) -> None:
    node = sshd.node("node1")
    async with NodeExecutorSSH(
        "node1",
        node.host,
        free_loopback_port(),
        username=sshd.user,
        client_key=node.ssh_key_path,
        known_hosts=node.ssh_known_hosts_path,
    ) as runner:
        with pytest.raises(TransportError, match=r"ssh to 127\.0\.0\.1"):
            await runner.run("true")


# -- host keys are checked unless the caller says, by name, not to (issue 14, finding 7) --------


@pytest.mark.asyncio
async def test_with_no_known_hosts_given_the_users_own_are_checked(
    sshd: OpenSshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """known_hosts=None used to switch checking off: any server would have been believed."""
    monkeypatch.setenv("HOME", str(tmp_path))  # a user whose known_hosts does not know sshd
    node = sshd.node("node1")
    async with NodeExecutorSSH(
        "node1", node.host, node.ssh_port, username=sshd.user, client_key=node.ssh_key_path
    ) as runner:
        with pytest.raises(TransportError, match="ssh to"):
            await runner.run("true")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "known_hosts").write_bytes(sshd.known_hosts.read_bytes())
    async with NodeExecutorSSH(
        "node1", node.host, node.ssh_port, username=sshd.user, client_key=node.ssh_key_path
    ) as runner:
        assert (await runner.run("echo trusted")).stdout == b"trusted\n"


@pytest.mark.asyncio
async def test_skipping_the_host_key_check_must_be_asked_for_by_name(
    sshd: OpenSshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    node = sshd.node("node1", ssh_known_hosts_path=None, ssh_skip_host_key_check=True)
    async with NodeExecutorSSH.for_node(node) as runner:
        assert (await runner.run("echo unchecked")).stdout == b"unchecked\n"
