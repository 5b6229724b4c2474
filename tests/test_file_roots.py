"""A file root that reaches no further than it should (issue 23, class 3).

The second round found a put that made setuid files, a root of / that served /proc/AGENTPID/mem
(the agent's secret key), an agent started with `python -m` in its working folder that let a
put-only key plant msgpack.py there (run as the agent at its next start), and a path of 100,000
names that kept the agent silent for 12-23 s. Each test below tries one of those doors, or one
more of the same kind: a get that brings a node's setuid file home, the agent's state folder
below its root, a kernel view reached below a root.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agents import AGENT, RawController, both_transports, running_agent
from zcl import agent_wire as wire
from zcl import keys
from zcl.agent.file_access import (
    MAX_PATH_BYTES,
    FileRoots,
    PathRefusedError,
    read_piece,
)
from zcl.errors import InvalidRequestError
from zcl_lab.openssh_server import OpenSshServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def files_only(keydir: Path, root: Path) -> Iterator[RawController]:
    options = ("--operations", "ping,get,put", "--file-root", str(root))
    with running_agent(keydir, *options) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        yield raw
        raw.sock.close(linger=0)


def ask(raw: RawController, body: dict[str, Any], operation: bytes = wire.PUT) -> wire.Reply:
    raw.request(b"f", operation, body)
    return raw.reply(timeout_ms=10_000)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def start_agent(
    keydir: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """An agent started as its docstring says, `python -m`, to see it refuse to start."""
    node = keys.node_dir(keydir, "node1")
    command = [sys.executable, "-m", AGENT, "--keys", str(node), "--bind", "tcp://127.0.0.1:*"]
    return subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def refused_at_start(started: subprocess.CompletedProcess[str], *words: str) -> None:
    assert started.returncode == 1, started
    assert started.stderr.count("\n") == 1, started.stderr  # one line, no traceback
    for word in words:
        assert word in started.stderr, started.stderr


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "given"),
    [(0o4755, 0o755), (0o2755, 0o755), (0o6777, 0o775), (0o1777, 0o775), (0o640, 0o640)],
)
def test_a_put_never_makes_a_set_id_sticky_or_world_writable_file(
    files_only: RawController, root: Path, asked: int, given: int
) -> None:
    whole = ask(files_only, {"path": str(root / "whole"), "data": b"#!/bin/sh\n", "mode": asked})
    assert whole.kind == wire.DONE, whole.body()
    opened = ask(files_only, {"path": str(root / "pieces"), "size": 1, "mode": asked})
    piece = {"transfer": opened.body()["transfer"], "offset": 0, "data": b"x", "last": True}
    assert ask(files_only, piece, wire.WRITE).kind == wire.DONE
    assert (mode_of(root / "whole"), mode_of(root / "pieces")) == (given, given)


def test_a_put_never_makes_a_set_id_sticky_or_world_writable_folder(
    files_only: RawController, root: Path
) -> None:
    made = ask(files_only, {"path": str(root / "shared"), "kind": "folder", "mode": 0o3777})
    assert made.kind == wire.DONE, made.body()
    assert mode_of(root / "shared") == 0o775


@pytest.mark.asyncio
async def test_modes_with_unsafe_bits_are_refused_or_stripped_alike_on_both_transports(
    sshd: OpenSshServer, keydir: Path, shared_dir: Path
) -> None:
    script = shared_dir / "setuid-script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o4755)
    on_node = shared_dir / "on-node"  # a file a node's user made setuid, for a get to bring home
    on_node.write_text("#!/bin/sh\n")
    on_node.chmod(0o6755)
    arrived = {}
    async with both_transports(sshd, keydir, "--file-root", str(shared_dir)) as executors:
        for name, ex in executors.items():
            with pytest.raises(InvalidRequestError, match="set-id"):
                await ex.put_file(script, str(shared_dir / f"asked-{name}"), mode=0o4755)
            await ex.put_file(script, str(shared_dir / f"kept-{name}"), preserve_mode=True)
            await ex.get_file(str(on_node), shared_dir / f"home-{name}", preserve_mode=True)
            arrived[name] = (
                mode_of(shared_dir / f"kept-{name}"),
                mode_of(shared_dir / f"home-{name}"),
                (shared_dir / f"asked-{name}").exists(),
            )
    assert arrived == {"ssh": (0o755, 0o755, False), "zmq": (0o755, 0o755, False)}


# -- roots checked at start -------------------------------------------------------------------


def test_a_root_of_slash_is_refused_at_start(keydir: Path) -> None:
    refused_at_start(start_agent(keydir, "--file-root", "/"), "--file-root /", "/proc")


def test_a_root_holding_the_agent_s_keys_is_refused_at_start(keydir: Path) -> None:
    refused_at_start(start_agent(keydir, "--file-root", str(keydir)), "keys")


def test_a_root_inside_the_agent_s_interpreter_is_refused_at_start(keydir: Path) -> None:
    inside = Path(sys.prefix) / "lib"
    refused_at_start(start_agent(keydir, "--file-root", str(inside)), "code")


@pytest.mark.parametrize("where", ["/proc/self", "/sys", "/dev"])
def test_a_root_in_a_kernel_view_is_refused_at_start(keydir: Path, where: str) -> None:
    refused_at_start(start_agent(keydir, "--file-root", where), "kernel view")


def test_the_working_folder_of_python_m_is_never_a_root(keydir: Path, root: Path) -> None:
    """Under `python -m`, Python imports top-level modules from the working folder first: a
    put of msgpack.py there would run as the agent at its next start."""
    started = start_agent(keydir, "--file-root", str(root), cwd=root)
    refused_at_start(started, "working folder")


def test_without_a_root_no_file_is_served_and_nothing_lands_in_the_working_folder(
    keydir: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)  # the agent's working folder, as under `python -m` from here
    with running_agent(keydir, "--operations", "ping,get,put") as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        try:
            planted = ask(raw, {"path": str(root / "msgpack.py"), "data": b"import os"})
            listed = ask(raw, {"path": str(root)}, wire.GET)
        finally:
            raw.sock.close(linger=0)
    for reply in (planted, listed):
        assert reply.kind == wire.ERROR and reply.body()["code"] == "forbidden-path", reply
        assert "serves no files" in reply.body()["reason"]
    assert list(root.iterdir()) == []


# -- paths checked per request ----------------------------------------------------------------


def test_the_agent_s_state_folder_below_its_root_is_never_served(keydir: Path, root: Path) -> None:
    state = root / ".state"
    options = ("--operations", "ping,get,put", "--file-root", str(root), "--state-dir", str(state))
    with running_agent(keydir, *options) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        try:
            put = ask(raw, {"path": str(state / "agent-x" / "staged" / "entry"), "data": b"/etc"})
            got = ask(raw, {"path": str(state)}, wire.GET)
        finally:
            raw.sock.close(linger=0)
    for reply in (put, got):
        assert reply.kind == wire.ERROR and "state folder" in reply.body()["reason"], reply
    assert not state.exists()


@pytest.mark.parametrize(
    "path", [f"/proc/{os.getpid()}/status", f"/proc/{os.getpid()}/mem", "/sys/kernel", "/dev/zero"]
)
def test_a_kernel_view_below_a_root_is_refused_when_opened(path: str) -> None:
    """A bind mount can put /proc below any root; what is opened is checked, not only its name.
    (A root of / is refused at start: this is the second line, driven directly.)"""
    everything = FileRoots(roots=(Path("/"),))
    with pytest.raises(PathRefusedError, match="kernel view"):
        read_piece(everything.locate(path), 0, 100, limit=1 << 20, max_entries=10)


def test_a_path_of_100000_names_is_refused_and_the_agent_answers_the_next_request(
    files_only: RawController, root: Path
) -> None:
    deep = str(root) + "/a" * 100_000
    files_only.request(b"deep", wire.GET, {"path": deep})
    files_only.request(b"after", wire.PING, {"ids": []})
    replies = {}
    for _ in range(2):
        reply = files_only.reply(timeout_ms=5_000)  # the old quadratic check took 12-23 s
        replies[reply.request_id] = reply
    assert replies[b"deep"].kind == wire.ERROR
    assert f"at most {MAX_PATH_BYTES} bytes" in replies[b"deep"].body()["reason"]
    assert replies[b"after"].kind == wire.PONG


NAMES = st.sampled_from(["a", "b", "..", ".", "", "x" * 256, "ü", "root", "c d"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, max_size=12), rooted=st.booleans())
def test_locate_accepts_exactly_the_paths_below_a_root(names: list[str], rooted: bool) -> None:
    root = Path("/srv/root")
    roots = FileRoots(roots=(root,), private=(root / "private",))
    text = ("/srv/root/" if rooted else "/srv/") + "/".join(names)
    path = PurePosixPath(text)
    below = path.parts[:3] == ("/", "srv", "root") and len(path.parts) > 3
    allowed = (
        below
        and ".." not in path.parts
        and all(len(name.encode()) <= 255 for name in path.parts)
        and path.parts[3:4] != ("private",)
    )
    try:
        located = roots.locate(text)
    except PathRefusedError:
        assert not allowed, text
    else:
        assert allowed, text
        assert located == (root, path.parts[3:])
        assert os.path.normpath(root.joinpath(*located[1])).startswith("/srv/root/")
