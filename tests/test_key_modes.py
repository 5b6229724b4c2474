"""Careless operators (issue 23, class 6): what OpenSSH's StrictModes refuses, we refuse too.

The second round found `zcl-keys generate` writing into a folder another user owns (who could
then swap in an authorized_keys of their own), every daemon starting with a 0644 secret key or
a 0666 authorized_keys without a word, and one unknown key reconnecting writing 2,450 WARNING
lines in 7 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from tests.agents import RawController, running_agent
from tests.helpers import eventually
from tests.test_daemon_startup import DAEMONS, assert_one_line_error, secure_args, start
from zcl import agent_wire as wire
from zcl import cli, keys
from zcl.curve import RepeatedLines
from zcl.errors import KeyFileError

pytestmark = pytest.mark.timeout(120)
OTHER_UID = 65534  # nobody


def zcl_keys(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zcl.keys", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# -- zcl-keys ---------------------------------------------------------------------------------


def test_generate_refuses_a_folder_another_user_owns(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    done = zcl_keys("generate", str(theirs), "--nodes", "node1", "--controllers", "runner")
    assert_one_line_error(done, str(theirs), f"uid {OTHER_UID}")
    assert list(theirs.iterdir()) == []


def test_generate_refuses_a_folder_below_one_anyone_may_write_to(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone may rename what is in it
    done = zcl_keys("generate", str(shared / "keys"), "--nodes", "node1", "--controllers", "r")
    assert_one_line_error(done, str(shared), "0777")
    assert not (shared / "keys").exists()


def test_generate_makes_authorized_keys_0644_whatever_the_umask(tmp_path: Path) -> None:
    before = os.umask(0)
    try:
        keys.generate(tmp_path / "keys", nodes=["node1"], controllers=["runner"])
    finally:
        os.umask(before)
    authorized = keys.node_dir(tmp_path / "keys", "node1") / "authorized_keys"
    assert authorized.stat().st_mode & 0o777 == 0o644
    keys.load_agent_keys(keys.node_dir(tmp_path / "keys", "node1"))  # and the agent takes it


# -- every daemon at start --------------------------------------------------------------------


def careless(keydir: Path, mistake: str) -> Path:
    """The node1 key folder with one operator's mistake made in it."""
    folder = keys.node_dir(keydir, "node1")
    if mistake == "secret 0644":
        (folder / "host.key_secret").chmod(0o644)
    elif mistake == "authorized_keys 0666":
        (folder / "authorized_keys").chmod(0o666)
    elif mistake == "authorized_keys owned by another user":
        os.chown(folder / "authorized_keys", OTHER_UID, OTHER_UID)
    elif mistake == "key folder 0777":
        folder.chmod(0o777)
    return folder


MISTAKES = {
    "secret 0644": "0644",
    "authorized_keys 0666": "0666",
    "authorized_keys owned by another user": f"uid {OTHER_UID}",
    "key folder 0777": "0777",
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_every_daemon_refuses_to_start_on_keys_others_may_read_or_swap(
    daemon: str, mistake: str, keydir: Path, tmp_path: Path
) -> None:
    careless(keydir, mistake)
    args = secure_args(daemon, keydir, 0)
    args = [arg.replace(":0", ":*") for arg in args]
    if daemon == "collector":
        args += ["--path", str(tmp_path / "journal.jsonl")]
    assert_one_line_error(start(daemon, *args, cwd=tmp_path), MISTAKES[mistake])


def test_a_controller_refuses_its_own_secret_key_readable_by_others(keydir: Path) -> None:
    folder = keys.controller_dir(keydir, "runner")
    (folder / "id.key_secret").chmod(0o640)
    with pytest.raises(KeyFileError, match="0640"):
        keys.load_controller_keys(folder)


def test_authorized_keys_made_writable_by_others_while_running_trusts_nobody(
    keydir: Path,
) -> None:
    authorized = keys.node_dir(keydir, "node1") / "authorized_keys"
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        try:
            raw.counters()  # answered (TimeoutError if not): trusted
            authorized.chmod(0o666)
            line = agent.wait_for_output(lambda text: "authorized_keys" in text, 10)
            assert line is not None and "0666" in line, line
            raw.request(b"after", wire.PING, {"ids": []})
            reply = raw.reply(timeout_ms=5_000)
            assert reply.kind == wire.ERROR and reply.body()["code"] == "key-refused", reply
        finally:
            raw.sock.close(linger=0)


# -- log lines per peer -----------------------------------------------------------------------


def test_a_line_about_one_peer_is_logged_once_per_interval_with_the_count_held_back() -> None:
    lines = RepeatedLines(interval_s=60)
    assert lines.due("key-a", now=0.0) == 0  # the first at once
    assert [lines.due("key-a", now=t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert lines.due("key-b", now=3.0) == 0  # another peer is not held back by the first
    assert lines.due("key-a", now=60.5) == 3  # the next, saying how many were held back
    assert lines.due("key-a", now=61.0) is None


def test_the_peers_remembered_are_bounded() -> None:
    lines = RepeatedLines(interval_s=60, most_peers=100)
    assert all(lines.due(f"key-{n}", now=0.0) == 0 for n in range(100))
    assert lines.due("one-too-many", now=1.0) is None  # memory bounded over one more line
    assert len(lines.last) == 100
    assert lines.due("later", now=61.0) == 0  # the old ones forgotten once their time is up
    assert len(lines.last) == 1


def test_an_unknown_key_connecting_again_and_again_is_one_warning(
    keydir: Path, tmp_path: Path
) -> None:
    keys.generate(tmp_path / "strangers", nodes=["x"], controllers=["stranger"])
    stranger = keys.load_controller_keys(keys.controller_dir(tmp_path / "strangers", "stranger"))
    node_key = keys.load_agent_keys(keys.node_dir(keydir, "node1")).public
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        watcher = RawController(ctx, agent.endpoint, keydir)
        try:
            for _ in range(40):
                sock: cli.Sock = ctx.socket(zmq.DEALER)
                sock.linger = 0
                sock.curve_publickey, sock.curve_secretkey = stranger.public, stranger.secret
                sock.curve_serverkey = node_key
                refused = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
                sock.connect(agent.endpoint)
                sock.send_multipart(wire.request(b"x", wire.PING, {"ids": []}))
                assert refused.poll(10_000), "the agent did not refuse the stranger"
                sock.disable_monitor()
                refused.close(linger=0)
                sock.close()
            eventually(
                lambda: watcher.counters().get("refused.unknown-key", 0) >= 40,
                20,
                "40 refusals counted",
            )
        finally:
            watcher.sock.close(linger=0)
    warnings = [line for line in agent.output if "refused controller key" in line]
    assert len(warnings) == 1, warnings
