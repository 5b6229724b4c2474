"""A command starts as a login's would, not with the agent's quirks (issue 23, class 7): default
signal dispositions (Python ignores SIGPIPE and SIGXFSZ, and an ignored signal survives exec),
one reading of the command string whatever the shell pool, and no stream window that can never
reopen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq

from tests.agents import RawController, both_transports, running_agent
from zcl import agent_wire as wire
from zcl.errors import InvalidRequestError
from zcl_lab.openssh_server import OpenSshServer

pytestmark = pytest.mark.timeout(120)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # SIGPIPE: `yes` is ended by the signal when `head` stops reading, without a word;
        # with it ignored, yes printed "Broken pipe" and exited 1.
        ("yes | head -n 1 >/dev/null; echo ${PIPESTATUS:-done}", (b"done\n", b"")),
        # SIGXFSZ: writing past `ulimit -f` kills the writer (128 + 25); ignored, the write
        # failed with "File too large" and exit 1.
        (
            'cd "$(mktemp -d)" && (ulimit -f 1; head -c 10000 /dev/zero > big); '
            'echo "status $?"; rm -f big',
            (b"status 153\n", b"File size limit exceeded\n"),  # the shell's word for it
        ),
    ],
    ids=["sigpipe", "sigxfsz"],
)
async def test_a_command_meets_default_signal_dispositions_on_both_transports(
    sshd: OpenSshServer, keydir: Path, command: str, expected: tuple[bytes, bytes]
) -> None:
    async with both_transports(sshd, keydir, "--warm-shells", "2") as executors:
        for name, runner in executors.items():
            result = await asyncio.wait_for(runner.run(command), 30)
            assert (result.stdout, result.stderr) == expected, name


@pytest.mark.asyncio
async def test_a_nul_in_the_command_is_refused_alike(sshd: OpenSshServer, keydir: Path) -> None:
    """With warm shells the command went through a pipe (bytes after the NUL ran); without,
    through argv (the C string ended at the NUL): two readings of one request."""
    async with both_transports(sshd, keydir) as executors:
        for runner in executors.values():
            with pytest.raises(InvalidRequestError, match="NUL"):
                await runner.run("echo before\x00echo after")


def test_the_agent_refuses_a_nul_and_a_window_that_cannot_reopen(keydir: Path) -> None:
    """What a peer sends, past our executor's checks."""
    with running_agent(keydir) as agent, zmq.Context() as ctx:
        raw = RawController(ctx, agent.endpoint, keydir)
        raw.request(b"nul", wire.RUN, {"command": "echo a\x00echo b"})
        refused = raw.reply()
        assert refused.kind == wire.ERROR and refused.body()["code"] == "bad-field"
        for window in (1, 1000, 0, -5, 1.5):
            body = {"command": "yes | head -c 2000000", "stream": True, "window": window}
            raw.request(b"w", wire.RUN, body)
            answer = raw.reply()
            assert answer.kind == wire.ERROR and answer.body()["code"] == "bad-field", window
