"""The ctypes posix_spawn: a new session, the descriptors given, errors as OSError."""

from __future__ import annotations

import os

import pytest

from zcl.agent.posix_spawn import spawn_in_new_session


def test_the_child_gets_its_own_session_and_our_descriptors() -> None:
    read_end, write_end = os.pipe()
    pid = spawn_in_new_session(
        "/bin/sh",
        ["sh", "-c", "ps -o sid= -p $$; echo done"],
        {"PATH": os.environ["PATH"]},
        stdin=None,
        stdout=write_end,
        stderr=write_end,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        text = output.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    session, done = text.split()
    assert int(session) == pid  # the shell leads a session of its own
    assert done == "done"


def test_a_missing_program_is_an_oserror() -> None:
    with pytest.raises(OSError, match="No such file"):
        spawn_in_new_session("/nonexistent", ["x"], {}, stdin=None, stdout=1, stderr=2)
