"""Run a shell command in its own process group, inside an asyncio loop, with bounded output.

The node agent spends most of its time here, so this is leaner than asyncio's subprocess
support (which, on Python 3.11, waits for each child with a thread of its own):
- `os.posix_spawn` starts `/bin/sh -c SCRIPT` in a new session (setsid), so the command and
  everything it starts share one process group that a timeout or cancel kills at once;
- a pidfd (Linux 5.3+) tells the event loop when the shell exited, with no thread and no SIGCHLD;
- the pipes are close-on-exec, so a command never inherits the pipes of another command running
  beside it (which would keep their readers waiting for an end of file that never comes);
- output beyond `max_output_bytes` is read and thrown away, so a command that floods its output
  cannot grow the agent's memory; `truncated` says it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SHELL = "/bin/sh"
READ_CHUNK = 64 * 1024
STDOUT, STDERR = 1, 2

# Called with (stream, data) as output arrives; returns False when it could not pass it on.
ChunkSink = Callable[[int, bytes], bool]


@dataclass(frozen=True)
class Finished:
    exit_status: int  # negative: the signal that ended the shell (subprocess's convention)
    stdout: bytes
    stderr: bytes
    duration_s: float
    truncated: bool
    timed_out: bool
    cancelled: bool


class SpawnError(OSError):
    """The shell could not be started (no /bin/sh, out of processes, ...)."""


def _spawn(script: str, env: Mapping[str, str]) -> tuple[int, int, int]:
    """Start `sh -c script` in a new session; its pid and the read ends of stdout and stderr."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(
            SHELL,
            ["sh", "-c", script],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),  # dup2 clears close-on-exec on 1 and 2 only
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        os.close(out_r)
        os.close(err_r)
        raise SpawnError(exc.errno, f"cannot start {SHELL}: {exc.strerror}") from None
    finally:
        os.close(out_w)
        os.close(err_w)
    return pid, out_r, err_r


class RunningCommand:
    """A started command. `await finished` gives its Finished once the shell has exited and
    its output pipes are closed."""

    def __init__(
        self,
        script: str,
        env: Mapping[str, str],
        *,
        timeout_s: float | None = None,
        max_output_bytes: int = 16 * 1024 * 1024,
        sink: ChunkSink | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.started = time.monotonic()
        self.max_output_bytes, self.sink = max_output_bytes, sink
        self.buffers: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        self.kept = 0
        self.truncated = self.timed_out = self.cancelled = False
        self.exit_status: int | None = None
        self.finished: asyncio.Future[Finished] = self.loop.create_future()
        self.open_pipes: dict[int, int] = {}
        self.pid, out_r, err_r = _spawn(script, env)
        for fd, stream in ((out_r, STDOUT), (err_r, STDERR)):
            os.set_blocking(fd, False)
            self.open_pipes[fd] = stream
            self.loop.add_reader(fd, self._read, fd)
        self.pidfd = os.pidfd_open(self.pid)
        self.loop.add_reader(self.pidfd, self._reap)
        self.timer = (
            self.loop.call_later(timeout_s, self._time_out) if timeout_s is not None else None
        )

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            del self.open_pipes[fd]
            self._maybe_finish()
            return
        stream = self.open_pipes[fd]
        if self.sink is not None:
            if not self.sink(stream, data):
                self.truncated = True
            return
        room = self.max_output_bytes - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if data:
            self.buffers[stream].append(data)
            self.kept += len(data)

    def _reap(self) -> None:
        self.loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        _, status = os.waitpid(self.pid, 0)  # it has exited: this only reaps it
        self.exit_status = os.waitstatus_to_exitcode(status)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.exit_status is None or self.open_pipes or self.finished.done():
            return
        if self.timer is not None:
            self.timer.cancel()
        self.finished.set_result(
            Finished(
                exit_status=self.exit_status,
                stdout=b"".join(self.buffers[STDOUT]),
                stderr=b"".join(self.buffers[STDERR]),
                duration_s=time.monotonic() - self.started,
                truncated=self.truncated,
                timed_out=self.timed_out,
                cancelled=self.cancelled,
            )
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: the shell and whatever it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.pid, signal.SIGKILL)

    def cancel(self) -> None:
        self.cancelled = True
        self.kill()

    def _time_out(self) -> None:
        self.timed_out = True
        self.kill()
