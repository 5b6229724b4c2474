"""put and get confined to the agent's file roots (issue 14, finding 4), against a real agent.

With `--operations ping,get,put` an attacker used to read /etc/shadow and the agent's secret
key, add a key to its authorized_keys, plant a .pth in its interpreter's folder, and redirect a
put through a symlink planted at the temporary name. Each test tries one of those doors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.agents import RawController, running_agent
from zcl import agent_wire as wire


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def files_only(keydir: Path, root: Path) -> Iterator[RawController]:
    """An agent narrowed to file operations, as an operator who trusts put/get would run it."""
    options = ("--operations", "ping,get,put", "--file-root", str(root))
    with running_agent(keydir, *options) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        yield raw
        raw.sock.close(linger=0)


def ask(raw: RawController, operation: bytes, path: Path | str, data: bytes | None = None) -> Any:
    body: dict[str, Any] = {"path": str(path)}
    if data is not None:
        body["data"] = data
    raw.request(b"f", operation, body)
    return raw.reply(timeout_ms=10_000)


def refused(reply: wire.Reply) -> str:
    assert reply.kind == wire.ERROR, reply
    error = reply.body()
    assert error["code"] == "forbidden-path", error
    return str(error["reason"])


def test_files_inside_the_root_are_served(files_only: RawController, root: Path) -> None:
    assert ask(files_only, wire.PUT, root / "a", b"hello").kind == wire.DONE
    assert ask(files_only, wire.GET, root / "a").body()["data"] == b"hello"


def test_files_outside_the_roots_are_refused(files_only: RawController, tmp_path: Path) -> None:
    assert "outside" in refused(ask(files_only, wire.GET, "/etc/shadow"))
    assert "outside" in refused(ask(files_only, wire.PUT, tmp_path / "beside", b"x"))
    assert not (tmp_path / "beside").exists()


def test_dot_dot_cannot_climb_out(files_only: RawController, root: Path) -> None:
    refused(ask(files_only, wire.GET, f"{root}/../../../../etc/passwd"))
    refused(ask(files_only, wire.PUT, f"{root}/../escaped", b"x"))
    assert not (root.parent / "escaped").exists()


def test_a_symlink_out_of_the_root_is_never_followed(
    files_only: RawController, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    (root / "file-link").symlink_to(outside / "secret")
    (root / "dir-link").symlink_to(outside)
    assert "link" in refused(ask(files_only, wire.GET, root / "file-link"))
    assert "link" in refused(ask(files_only, wire.GET, root / "dir-link" / "secret"))
    refused(ask(files_only, wire.PUT, root / "dir-link" / "planted", b"x"))
    assert not (outside / "planted").exists()


def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(
    files_only: RawController, root: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (root / ".report.partial").symlink_to(victim)  # the name put used to write through
    assert ask(files_only, wire.PUT, root / "report", b"new").kind == wire.DONE
    assert victim.read_text() == "untouched"
    assert (root / "report").read_bytes() == b"new"


def test_concurrent_puts_to_one_path_leave_the_last_one_told_done(
    files_only: RawController, root: Path
) -> None:
    target = root / "shared"
    contents = {f"p{n}".encode(): bytes([n]) * (64 * 1024 + n) for n in range(24)}
    for request_id, data in contents.items():
        files_only.request(request_id, wire.PUT, {"path": str(target), "data": data})
    replies = [files_only.reply(timeout_ms=20_000) for _ in contents]
    assert [reply.kind for reply in replies] == [wire.DONE] * len(contents), [
        reply.body() for reply in replies
    ]
    assert target.read_bytes() == contents[replies[-1].request_id]
    assert sorted(path.name for path in root.iterdir()) == ["shared"]  # no temporary left


def test_a_failed_put_leaves_no_temporary_file_behind(
    files_only: RawController, root: Path
) -> None:
    (root / "a-folder").mkdir()
    reply = ask(files_only, wire.PUT, root / "a-folder", b"cannot replace a folder")
    assert reply.kind == wire.ERROR and reply.body()["code"] == "file-error"
    assert sorted(path.name for path in root.iterdir()) == ["a-folder"]
