"""Files and folders in pieces, with modes, the same on both transports (issue 15, part 5).

put/get used to carry a file whole in one message: at most 32 MiB, held in memory whole on
both sides, no folders, no modes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.agents import RawController, both_transports, executor, free_port, running_agent
from tests.helpers import eventually
from zcl import agent_wire as wire
from zcl.errors import InvalidRequestError, RemoteError
from zcl_lab.openssh_server import OpenSshServer

pytestmark = pytest.mark.timeout(180)
MiB = 1024 * 1024


def root(folder: Path) -> tuple[str, str]:
    """The agent's file root, where the test keeps its files."""
    return ("--file-root", str(folder))


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def tree(root: Path) -> Path:
    """A folder as a runner ships one: a script, data past the old 32 MiB limit, an empty file,
    a private subfolder."""
    root.mkdir()
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (root / "run.sh").chmod(0o750)
    (root / "big.bin").write_bytes(os.urandom(MiB) * 40 + b"tail")
    (root / "empty").write_bytes(b"")
    (root / "conf").mkdir(mode=0o700)
    (root / "conf" / "settings").write_text("a = 1\n")
    (root / "conf" / "settings").chmod(0o600)
    return root


def described(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry below root: its kind, its permission bits and its content's digest."""
    seen = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder, name)
            info = path.lstat()
            digest = "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            kind = "folder" if stat.S_ISDIR(info.st_mode) else "file"
            seen[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode), digest)
    return seen


def without_modes(entries: dict[str, tuple[str, int, str]]) -> dict[str, tuple[str, str]]:
    return {name: (kind, digest) for name, (kind, _, digest) in entries.items()}


@pytest.mark.asyncio
@pytest.mark.parametrize("preserve_mode", [False, True], ids=["umask", "preserved"])
async def test_a_folder_goes_there_and_back_alike_on_both_transports(
    sshd: OpenSshServer, keydir: Path, shared_dir: Path, preserve_mode: bool
) -> None:
    source = tree(shared_dir / "source")
    arrived = {}
    with umask(0o022):  # the agent's and the SSH login's (see openssh_server)
        async with both_transports(sshd, keydir, "--file-root", str(shared_dir)) as executors:
            for name, ex in executors.items():
                remote = shared_dir / f"on-node-{name}"
                back = shared_dir / f"back-{name}"
                await asyncio.wait_for(
                    ex.put_file(source, str(remote), preserve_mode=preserve_mode), 120
                )
                await asyncio.wait_for(
                    ex.get_file(str(remote), back, preserve_mode=preserve_mode), 120
                )
                arrived[name] = described(remote)
                assert without_modes(described(back)) == without_modes(described(source)), name
    assert arrived["zmq"] == arrived["ssh"]
    assert without_modes(arrived["zmq"]) == without_modes(described(source))
    if preserve_mode:
        assert arrived["zmq"] == described(source)
    else:
        assert arrived["zmq"]["run.sh"][1] == arrived["zmq"]["conf/settings"][1] == 0o644
    assert not list(shared_dir.rglob("*.partial"))


@pytest.mark.asyncio
async def test_one_file_gets_the_mode_asked_for_on_both_transports(
    sshd: OpenSshServer, keydir: Path, shared_dir: Path
) -> None:
    script = shared_dir / "job.sh"
    script.write_text("#!/bin/sh\necho job done\n")
    async with both_transports(sshd, keydir, "--file-root", str(shared_dir)) as executors:
        for name, ex in executors.items():
            remote = shared_dir / f"job-{name}.sh"
            await ex.put_file(script, str(remote), mode=0o755)
            assert stat.S_IMODE(remote.stat().st_mode) == 0o755, name
            assert (await ex.run(str(remote))).stdout == b"job done\n", name
            with pytest.raises(InvalidRequestError, match="mode= is for one file"):
                await ex.put_file(shared_dir, str(shared_dir / "copy"), mode=0o755)
            with pytest.raises(InvalidRequestError, match="permission bits"):
                await ex.put_file(script, str(remote), mode=0o10000)
            with pytest.raises(InvalidRequestError, match="No such file"):
                await ex.put_file(shared_dir / "missing", str(remote))


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.asyncio
async def test_a_file_far_larger_than_a_message_never_sits_whole_in_the_agent(
    keydir: Path, tmp_path: Path
) -> None:
    """256 MiB there and back through an agent whose messages are capped at 8 MiB: its peak
    memory stays well under the file's size."""
    source = tmp_path / "large.bin"
    with source.open("wb") as out:
        for n in range(256):
            out.write(bytes([n]) * MiB)
    with running_agent(keydir, "--max-message-bytes", str(8 * MiB), *root(tmp_path)) as agent:
        async with executor(agent.endpoint, keydir) as over_zmq:
            await asyncio.wait_for(over_zmq.put_file(source, str(tmp_path / "there.bin")), 120)
            await asyncio.wait_for(
                over_zmq.get_file(str(tmp_path / "there.bin"), tmp_path / "back"), 120
            )
            peak = peak_rss_bytes(agent.process.pid)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "there.bin").read_bytes()).hexdigest() == digest
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == digest
    assert peak < 128 * MiB, f"agent peak memory {peak / MiB:.0f} MiB"


@pytest.mark.asyncio
async def test_a_file_over_the_limit_is_refused_before_any_of_it_is_sent(
    keydir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * (5 * MiB))
    with running_agent(keydir, "--max-file-bytes", str(MiB), *root(tmp_path)) as agent:
        async with executor(agent.endpoint, keydir) as over_zmq:
            sent: list[bytes] = []
            request = over_zmq._request

            async def counted(operation: bytes, *args: object) -> object:
                sent.append(operation)
                return await request(operation, *args)  # type: ignore[arg-type]

            over_zmq._request = counted  # type: ignore[method-assign,assignment]
            # As an executor that has not learned the agent's limits would: the agent's own
            # check (the executor's, before sending, is tests/test_limits.py's).
            over_zmq.session.agent_limits = {}
            with pytest.raises(RemoteError, match=f"too-large: file over {MiB} bytes"):
                await asyncio.wait_for(over_zmq.put_file(source, str(tmp_path / "there")), 30)
    assert sent == [wire.PUT]  # the opening request only: no piece followed it
    assert not (tmp_path / "there").exists()
    assert not list(tmp_path.glob(".there*"))


# -- what a peer can send: pieces out of order, transfers it never finishes --------------------


def answer(
    raw: RawController, request_id: bytes, operation: bytes, body: dict[str, object]
) -> wire.Reply:
    raw.request(request_id, operation, body)
    reply = raw.reply(10_000)
    assert reply.request_id == request_id
    return reply


def refusal(reply: wire.Reply) -> str:
    assert reply.kind == wire.ERROR, reply
    return str(reply.body()["code"])


def test_pieces_must_come_in_order_and_add_up_to_the_size(keydir: Path, tmp_path: Path) -> None:
    target = tmp_path / "pieces"
    with running_agent(keydir, *root(tmp_path)) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        opened = answer(raw, b"1", wire.PUT, {"path": str(target), "size": 10})
        handle = opened.body()["transfer"]

        def piece(rid: bytes, offset: int, data: bytes, last: bool = False) -> wire.Reply:
            body = {"transfer": handle, "offset": offset, "data": data, "last": last}
            return answer(raw, rid, wire.WRITE, body)

        assert refusal(piece(b"2", 5, b"late")) == "bad-piece"  # not the next offset
        assert refusal(piece(b"3", 0, b"x" * 11)) == "bad-piece"  # beyond the size
        assert refusal(piece(b"4", 0, b"short", last=True)) == "bad-piece"  # ends too soon
        assert piece(b"5", 0, b"01234").kind == wire.DONE
        assert not target.exists()  # nothing in place before the last piece
        assert piece(b"6", 5, b"56789", last=True).kind == wire.DONE
        assert target.read_bytes() == b"0123456789"
        assert refusal(piece(b"7", 10, b"", last=True)) == "unknown-transfer"  # it is over
        stranger = {"transfer": b"12345678", "offset": 0, "data": b"x", "last": True}
        assert refusal(answer(raw, b"8", wire.WRITE, stranger)) == "unknown-transfer"
        raw.sock.close(linger=0)
    assert not list(tmp_path.glob(".pieces*"))


def test_a_put_whose_controller_vanishes_leaves_no_temporary_file(
    keydir: Path, tmp_path: Path
) -> None:
    with (
        running_agent(keydir, "--controller-timeout", "0.5", *root(tmp_path)) as agent,
        zmq.Context() as ctx,
    ):
        raw = RawController(ctx, agent.endpoint, keydir)
        opened = answer(raw, b"1", wire.PUT, {"path": str(tmp_path / "abandoned"), "size": 100})
        body = {"transfer": opened.body()["transfer"], "offset": 0, "data": b"half"}
        assert answer(raw, b"2", wire.WRITE, body).kind == wire.DONE
        assert list(tmp_path.glob(".abandoned*"))  # the piece is on disk, not yet in place
        raw.sock.close(linger=0)  # gone without a word
        watcher = RawController(ctx, agent.endpoint, keydir)
        expired = lambda: bool(watcher.counters().get("transfers.expired"))  # noqa: E731
        eventually(expired, 15, "the abandoned transfer expired")
        watcher.sock.close(linger=0)
    assert not list(tmp_path.glob(".abandoned*"))
    assert not (tmp_path / "abandoned").exists()


def test_the_write_operation_comes_with_put_and_only_with_it(keydir: Path, tmp_path: Path) -> None:
    with running_agent(keydir, "--operations", "ping,get") as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        body = {"transfer": b"12345678", "offset": 0, "data": b"x", "last": True}
        assert refusal(answer(raw, b"1", wire.WRITE, body)) == "not-allowed"
        raw.sock.close(linger=0)


def test_a_put_cut_off_by_a_sigkill_leaves_no_temporary_file_once_the_agent_is_back(
    keydir: Path, tmp_path: Path
) -> None:
    """SIGKILL gives the agent no chance to discard a put under way; its successor (same keys,
    same endpoint) removes the temporary file its state folder says was left (issue 22,
    finding 8: it stayed in the file root for ever)."""
    state, files = tmp_path / "state", tmp_path / "files"
    files.mkdir()
    bind = f"tcp://127.0.0.1:{free_port()}"
    args = ("--state-dir", str(state), "--file-root", str(files))
    with running_agent(keydir, *args, bind=bind) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        opened = answer(raw, b"1", wire.PUT, {"path": str(files / "cut"), "size": 100})
        body = {"transfer": opened.body()["transfer"], "offset": 0, "data": b"half"}
        assert answer(raw, b"2", wire.WRITE, body).kind == wire.DONE
        assert list(files.glob(".cut*"))  # the piece is on disk, not yet in place
        raw.sock.close(linger=0)
        agent.kill()  # SIGKILL
        assert list(files.glob(".cut*")), "left behind, as a crash leaves it"
    with running_agent(keydir, *args, bind=bind):
        assert not list(files.glob(".cut*"))  # gone before the agent says it serves
    assert not (files / "cut").exists()


@pytest.mark.asyncio
async def test_a_put_the_node_refuses_names_the_node_s_path_on_both_transports(
    sshd: OpenSshServer, keydir: Path, tmp_path: Path, shared_dir: Path
) -> None:
    """Issue 22, finding 3: the SSH side named the local file, which was fine, for a failure on
    the node (a folder that is not there)."""
    source = tmp_path / "here.txt"
    source.write_text("x")
    remote = f"{shared_dir}/no-such-folder/there.txt"
    async with both_transports(sshd, keydir, "--file-root", str(shared_dir)) as executors:
        for name, runner in executors.items():
            with pytest.raises(RemoteError) as refused:
                await asyncio.wait_for(runner.put_file(source, remote), 30)
            message = str(refused.value)
            assert f"{shared_dir}/no-such-folder" in message, (name, message)
            assert str(source) not in message, (name, message)
