"""The habits a maintainer expects of a command library, the same on both transports, against
a real agent and a real sshd (issue 24, part 7):

- `check=True` raises CommandFailedError holding the result (asyncssh's ProcessError);
- a CommandTimeoutError carries the output written before the kill;
- `stream()` gives its output a line at a time too, each stream apart;
- put_file and get_file report progress file by file, ending at each file's size;
- FallbackExecutor.ping() asks the node's agent, as ZmqNodeExecutor.ping() does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.agents import both_transports, executor, running_agent
from zcl.errors import CommandFailedError, CommandTimeoutError
from zcl.fallback import FallbackExecutor
from zcl.protocols import NodeExecutorProtocol
from zcl.ssh_context import NodeExecutorSSH
from zcl_lab.openssh_server import OpenSshServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


async def test_check_raises_with_the_result_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    async with both_transports(sshd, keydir) as executors:
        for name, node in executors.items():
            with pytest.raises(CommandFailedError) as failed:
                await node.run("echo partial; echo broke >&2; exit 3", check=True)
            said = "node1: 'echo partial; echo broke >&2; exit 3' exited with status 3: broke"
            assert str(failed.value) == said, name
            result = failed.value.result
            assert (result.exit_status, result.stdout, result.transport) == (3, b"partial\n", name)
            assert (await node.run("exit 3")).exit_status == 3  # without check: a result
            assert (await node.run("true", check=True)).exit_status == 0


async def test_a_timeout_keeps_the_output_written_before_the_kill(
    sshd: OpenSshServer, keydir: Path
) -> None:
    async with both_transports(sshd, keydir) as executors:
        seen = {}
        for name, node in executors.items():
            with pytest.raises(CommandTimeoutError) as timed_out:
                await node.run("echo before; echo warn >&2; sleep 30", timeout_s=1)
            seen[name] = (timed_out.value.stdout, timed_out.value.stderr)
        assert seen == {"ssh": (b"before\n", b"warn\n"), "zmq": (b"before\n", b"warn\n")}


async def test_a_stream_comes_a_line_at_a_time_on_both_transports(
    sshd: OpenSshServer, keydir: Path
) -> None:
    # Lines cut across writes and interleaved with stderr, and a last line with no newline.
    script = "printf 'one\\ntw'; sleep 0.1; printf 'o\\nthr'; echo err >&2; printf ee"
    async with both_transports(sshd, keydir) as executors:
        for name, node in executors.items():
            async with node.stream(script, timeout_s=20) as output:
                lines = [(stream, line) async for stream, line in output.lines()]
            stdout = [line for stream, line in lines if stream == "stdout"]
            assert stdout == [b"one\n", b"two\n", b"three"], name
            assert [line for stream, line in lines if stream == "stderr"] == [b"err\n"], name


class Seen(list[tuple[str, int, int]]):
    """A progress callback that keeps what it was told."""

    def __call__(self, path: str, done: int, total: int) -> None:
        self.append((path, done, total))


async def test_transfers_report_progress_file_by_file(
    sshd: OpenSshServer, keydir: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """Into a folder the SSH login may write to, and back into this test's own."""
    local = tmp_path / "out"
    (local / "sub").mkdir(parents=True)
    (local / "small").write_bytes(b"x" * 10)
    (local / "sub" / "big").write_bytes(b"y" * (3 * 1024 * 1024 + 5))  # several pieces
    async with both_transports(sshd, keydir, "--file-root", str(shared_dir)) as executors:
        for name, node in executors.items():
            remote = shared_dir / f"there-{name}"
            put, got = Seen(), Seen()
            await node.put_file(local, str(remote), progress=put)
            back = tmp_path / f"back-{name}"
            await node.get_file(str(remote), back, progress=got)
            assert (back / "sub" / "big").read_bytes() == (local / "sub" / "big").read_bytes()
            for seen in (put, got):
                last = {path: (done, total) for path, done, total in seen}
                assert last == {
                    f"{remote}/small": (10, 10),
                    f"{remote}/sub/big": (3 * 1024 * 1024 + 5, 3 * 1024 * 1024 + 5),
                }, name
                big = [done for path, done, _ in seen if path.endswith("big")]
                assert big == sorted(big) and len(big) >= 2, name  # as the pieces land


async def test_the_fallback_pings_the_nodes_agent(sshd: OpenSshServer, keydir: Path) -> None:
    with running_agent(keydir) as agent:
        over_zmq = executor(agent.endpoint, keydir)
        over_ssh: NodeExecutorProtocol = NodeExecutorSSH.for_node(sshd.node("node1"))
        assert isinstance(over_ssh, NodeExecutorSSH)
        fallback = FallbackExecutor(over_zmq, over_ssh)
        try:
            pong = await asyncio.wait_for(fallback.ping(), 20)
            assert pong.keys() == (await over_zmq.ping()).keys()
            assert pong["running"] == 0 and pong["round_trip_s"] > 0
        finally:
            await fallback.close()
