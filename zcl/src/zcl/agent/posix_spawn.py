"""posix_spawn(3) through ctypes, so that starting a process does not stop the interpreter.

Python's os.posix_spawn keeps the GIL while the C call runs, and the C call returns only once
the child is well into its exec: about 0.6 ms on our 2-core test machines, during which every
thread of the process waits. ctypes releases the GIL around foreign calls, so a thread calling
this function starts processes while the event loop goes on.

Linux with glibc: POSIX_SPAWN_SETSID is glibc's value (since glibc 2.26).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Mapping, Sequence

POSIX_SPAWN_SETSIGDEF, POSIX_SPAWN_SETSIGMASK, POSIX_SPAWN_SETSID = 0x04, 0x08, 0x80
# Python ignores these, and an ignored signal stays ignored across exec: a command must meet
# them as a login's would (`yes | head` ends quietly, a write past `ulimit -f` is killed).
RESET_TO_DEFAULT = (signal.SIGPIPE, signal.SIGXFSZ)
_SIGSET_ROOM = 128  # bytes for sigset_t (glibc's is 128)
_STRUCT_ROOM = 1024  # bytes for posix_spawn_file_actions_t / posix_spawnattr_t (80 / 336 here)
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _strings(items: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


def spawn_in_new_session(
    path: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: int | None,
    stdout: int,
    stderr: int,
) -> int:
    """Start `path` in a new session (so its process group can be killed as one) with the
    given descriptors as 0, 1 and 2 (stdin None: /dev/null). Returns the pid; raises OSError."""
    actions = ctypes.create_string_buffer(_STRUCT_ROOM)
    attributes = ctypes.create_string_buffer(_STRUCT_ROOM)
    _libc.posix_spawn_file_actions_init(actions)
    _libc.posix_spawnattr_init(attributes)
    defaults, mask = (
        ctypes.create_string_buffer(_SIGSET_ROOM),
        ctypes.create_string_buffer(_SIGSET_ROOM),
    )
    _libc.sigemptyset(defaults)
    _libc.sigemptyset(mask)  # nothing blocked, whatever this thread blocks
    for sig in RESET_TO_DEFAULT:
        _libc.sigaddset(defaults, int(sig))
    try:
        flags = POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        _libc.posix_spawnattr_setflags(attributes, ctypes.c_short(flags))
        _libc.posix_spawnattr_setsigdefault(attributes, defaults)
        _libc.posix_spawnattr_setsigmask(attributes, mask)
        if stdin is None:
            _libc.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0)
        else:
            _libc.posix_spawn_file_actions_adddup2(actions, stdin, 0)
        _libc.posix_spawn_file_actions_adddup2(actions, stdout, 1)
        _libc.posix_spawn_file_actions_adddup2(actions, stderr, 2)
        pid = ctypes.c_int()
        failure = _libc.posix_spawn(
            ctypes.byref(pid),
            os.fsencode(path),
            actions,
            attributes,
            _strings([os.fsencode(arg) for arg in argv]),
            _strings([os.fsencode(f"{name}={value}") for name, value in env.items()]),
        )
    finally:
        _libc.posix_spawn_file_actions_destroy(actions)
        _libc.posix_spawnattr_destroy(attributes)
    if failure:
        raise OSError(failure, os.strerror(failure), path)
    return pid.value
