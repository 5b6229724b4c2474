"""Run a shell command in its own process group, inside an asyncio loop, with bounded output.

The node agent spends most of its time here, so this is leaner than asyncio's subprocess
support (which, on Python 3.11, waits for each child with a thread of its own):
- `os.posix_spawn` starts `/bin/sh -c SCRIPT` in a new session (setsid), so the command and
  everything it starts share one process group that a timeout or cancel kills at once;
- a pidfd (Linux 5.3+) tells the event loop when the shell exited, with no thread and no SIGCHLD;
- the pipes are close-on-exec, so a command never inherits the pipes of another command running
  beside it (which would keep their readers waiting for an end of file that never comes);
- optionally (`warm`), shells started ahead of time take the exec off the command's path;
- the three descriptors of each command (stdout, stderr, pidfd) are watched by one epoll set
  of our own, which the loop watches as a single descriptor: asyncio's add_reader and
  remove_reader cost about 60 us a pair here, six per command, more than a third of the agent's
  own CPU time per command;
- a command can leave its process group (setsid, a daemon's double fork), so each command's
  shell exports ZCL_COMMAND_ID, which every process it starts inherits; a kill also finds and
  kills the processes carrying it (a process that clears its environment escapes this: only a
  cgroup of its own would hold it), and once the shell is gone a killed command's pipes are
  given PIPE_GRACE_S, not for ever, so a straggler holding stdout cannot keep its slot busy;
- output beyond `max_output_bytes` is read and thrown away, kept or streamed alike, so a command
  that floods its output cannot grow the agent's memory (nor, streamed, its send queues)
  whether or not the controller reads; `truncated` says it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import secrets
import select
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from zcl.agent.posix_spawn import spawn_in_new_session
from zcl.errors import ZclError
from zcl.protocols import COMMAND_MARKER
from zcl.run_options import RunOptions

log = logging.getLogger("zcl.agent.spawn")  # its module path, also under python -m
SHELL = "/bin/sh"
MARKER = COMMAND_MARKER  # exported to every command; its descendants carry it
PIPE_GRACE_S = 1.0  # after a kill, how long a killed command's pipes may stay open
MIN_FILL_BACKOFF_S, MAX_FILL_BACKOFF_S = 0.01, 2.0  # a warm-shell filler's waits after failures
READ_CHUNK = 1024 * 1024
PIPE_BYTES = 1024 * 1024  # Linux's default most (pipe-max-size): a megabyte in one read, not 16


class Stream(IntEnum):
    """Which of a command's outputs a chunk came from (their file descriptor numbers)."""

    STDOUT = 1
    STDERR = 2


STDOUT, STDERR = Stream.STDOUT, Stream.STDERR

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


class SpawnError(ZclError, OSError):
    """The shell could not be started (no /bin/sh, out of processes, ...)."""


@dataclass(frozen=True)
class _Shell:
    pid: int
    script_in: int | None  # a warm shell's stdin, where its script goes; None for `sh -c`
    out: int
    err: int


@dataclass(frozen=True)
class RunAs:
    """Another user a command runs as (the agent must be root): setpriv changes the ids and
    the groups, then executes the shell, so the shell keeps the pid the agent watches."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    setpriv: str  # its absolute path, found when the agent starts

    def argv(self) -> list[str]:
        ids = [f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        return [self.setpriv, *ids, "--", SHELL]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return dict(env, HOME=self.home, USER=self.name, LOGNAME=self.name, SHELL=self.shell)


def _spawn(
    script: str | None,
    env: Mapping[str, str],
    *,
    with_stdin: bool = False,
    run_as: RunAs | None = None,
) -> _Shell:
    """Start `sh -c script`, or with no script a warm `sh -s` that waits for it on stdin, in a
    new session; `with_stdin` gives `sh -c` a pipe for its stdin (else /dev/null). Any failure
    is a SpawnError and leaves no descriptor open."""
    ours: list[int] = []  # every descriptor made here, until each is closed or handed over
    piped = script is None or with_stdin
    path = SHELL
    try:
        out_r, out_w = _pipe(ours)  # not O_NONBLOCK: that would reach the child's end
        err_r, err_w = _pipe(ours)
        in_r, in_w = _pipe(ours) if piped else (-1, -1)
        with contextlib.suppress(OSError):  # a smaller pipe only means more reads
            fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        argv = ["sh", "-c", script] if script is not None else ["sh", "-s"]
        if run_as is not None:
            path, argv = run_as.setpriv, [*run_as.argv(), *argv[1:]]
            env = run_as.environment(env)
        # dup2 in the child clears close-on-exec on its 0, 1 and 2 only
        pid = spawn_in_new_session(
            path, argv, env, stdin=in_r if in_r >= 0 else None, stdout=out_w, stderr=err_w
        )
    except OSError as exc:
        for fd in ours:
            os.close(fd)
        raise SpawnError(exc.errno, f"cannot start {path}: {exc.strerror}") from None
    for fd in (out_w, err_w, in_r):  # the child's ends, now the child's alone
        if fd >= 0:
            os.close(fd)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return _Shell(pid, in_w if piped else None, out_r, err_r)


def _pipe(ours: list[int]) -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    ours.extend((read_end, write_end))
    return read_end, write_end


class WarmShells:
    """Shells started before they are needed, each waiting for its script on stdin (`sh -s`).

    Starting /bin/sh is most of what running `true` costs (exec: about 1 ms of CPU on our test
    machines); a warm shell has paid it already, so a command starts as soon as its script is
    written. dash reports errors the same way for `sh -s` as for `sh -c` ("sh: 1: ..."). The
    script must reach the shell in one atomic pipe write (PIPE_BUF, 4,096 bytes) so that the
    shell has read all of it before the command runs, and the command then finds its stdin at
    end of file, as with /dev/null; longer scripts start a fresh `sh -c`.
    """

    def __init__(self, env: Mapping[str, str], size: int = 8, fillers: int = 2) -> None:
        self.env, self.size = env, size
        self.stopped = threading.Event()
        self.pause: Callable[[float], bool] = self.stopped.wait  # the back-off's wait
        self.ready: deque[_Shell] = deque()  # appended by the filler thread, taken by the loop
        self.wanted = threading.Event()
        self.stopping = False
        self.taken = self.empty = self.too_long = 0  # warm shell used; none ready; script too long
        self.fillers = [
            threading.Thread(target=self._keep_filled, name="warm-shells", daemon=True)
            for _ in range(fillers if size > 0 else 0)
        ]
        for filler in self.fillers:
            filler.start()

    def take(self, script: bytes) -> _Shell | None:
        if len(script) > select.PIPE_BUF:
            self.too_long += 1
            return None
        self.wanted.set()
        while self.ready:
            shell = self.ready.popleft()
            stdin = _script_in(shell)
            try:
                os.write(stdin, script)
                self.taken += 1
                return shell
            except OSError:  # it died while waiting (killed from outside): discard it
                _discard(shell)
            finally:
                os.close(stdin)
        self.empty += 1
        return None

    def _keep_filled(self) -> None:
        """The filler thread: spawning here releases the GIL (posix_spawn.py), so the event
        loop keeps serving while shells start."""
        delay = 0.0
        while not self.stopping:
            self.wanted.wait()
            try:
                while len(self.ready) < self.size and not self.stopping:
                    self.ready.append(_spawn(None, self.env))
            except SpawnError as exc:
                # Out of processes or descriptors: commands start cold (and fail on their own
                # if they cannot), while this waits longer after each failure instead of
                # spinning a core on the limit.
                delay = min(max(delay * 2, MIN_FILL_BACKOFF_S), MAX_FILL_BACKOFF_S)
                log.warning("no warm shell (%s); next try in %.2f s", exc.strerror, delay)
                if self.pause(delay):
                    return
                continue
            delay = 0.0
            if len(self.ready) >= self.size:
                self.wanted.clear()

    def close(self) -> None:
        self.stopping = True
        self.stopped.set()
        self.wanted.set()
        for filler in self.fillers:
            filler.join()
        while self.ready:
            shell = self.ready.popleft()
            os.close(_script_in(shell))
            _discard(shell)


def _script_in(shell: _Shell) -> int:
    if shell.script_in is None:  # a bug of ours: only `sh -s` shells are kept warm
        raise RuntimeError("a warm shell without a stdin for its script")
    return shell.script_in


def _discard(shell: _Shell) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(shell.pid, signal.SIGKILL)
    os.waitpid(shell.pid, 0)
    os.close(shell.out)
    os.close(shell.err)


# A command's id is IDENTITY.INCARNATION.N: which agent (set_identity), which run of it, which
# command. A restarted agent finds what its predecessors left by the IDENTITY part.
_identity = "anonymous"
_incarnation = secrets.token_hex(4)
_NUMBERS = itertools.count(1)


def set_identity(identity: str) -> None:
    """Name this agent for the commands it will start (before the first one)."""
    global _identity  # noqa: PLW0603 - one agent per process, named once at its start
    _identity = identity


def reap_predecessors(identity: str) -> int:
    """Kill what earlier incarnations of the agent named `identity` left running (an agent
    SIGKILLed mid-command cannot kill its commands); how many processes were found."""
    return kill_marked(f"{identity}.", prefix=True)


def kill_marked(
    command_id: str,
    passes: int = 3,
    *,
    prefix: bool = False,
    sig: int = signal.SIGKILL,
    spare_group: int | None = None,
) -> int:
    """Signal (SIGKILL) every process whose environment carries MARKER=command_id (or, with
    `prefix`, an id that starts with it); how many were found.

    /proc is read again until a pass finds none (at most `passes`), for a process that forked
    while we read. Processes of other users cannot be read and are not ours to kill anyway.
    `spare_group` leaves out the members of a process group signalled already: a SIGTERM trap
    that runs `rm` must not have its `rm` terminated too.
    """
    needle = f"{MARKER}={command_id}".encode()

    def carries(environ: bytes) -> bool:
        entries = environ.split(b"\0")
        if prefix:
            return any(entry.startswith(needle) for entry in entries)
        return needle in entries

    # A process SIGKILLed in one pass may still be dying (environ readable) in the next: it is
    # counted once, by its pid.
    killed: set[int] = set()
    for _ in range(passes):
        found = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as environ:
                    if not carries(environ.read()):
                        continue
                if spare_group is not None and os.getpgid(int(entry.name)) == spare_group:
                    continue
                os.kill(int(entry.name), sig)
            except (OSError, ValueError):  # gone, or not ours to read
                continue
            if int(entry.name) not in killed:
                killed.add(int(entry.name))
                found += 1
        if not found:
            break
    return len(killed)


class FdWatcher:
    """Calls a callback when a descriptor becomes readable: one epoll set per event loop."""

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FdWatcher]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> FdWatcher:
        watcher = cls._per_loop.get(loop)
        if watcher is None:
            watcher = cls._per_loop[loop] = cls(loop)
        return watcher

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.epoll = select.epoll()
        self.callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self.epoll.fileno(), self._ready)

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        self.callbacks[fd] = callback
        self.epoll.register(fd, select.EPOLLIN)

    def forget(self, fd: int) -> None:
        del self.callbacks[fd]
        self.epoll.unregister(fd)

    def _ready(self) -> None:
        for fd, _ in self.epoll.poll(0):
            callback = self.callbacks.get(fd)
            if callback is not None:
                callback()


DEFAULTS = RunOptions()


class RunningCommand:
    """A started command. `await finished` gives its Finished once the shell has exited and
    its output pipes are closed."""

    def __init__(
        self,
        script: str,
        env: Mapping[str, str],
        options: RunOptions = DEFAULTS,
        *,
        sink: ChunkSink | None = None,
        warm: WarmShells | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        """`options` as the agent holds them to its limits (its output cap, its kill grace);
        `run_as` is the user they name, looked up in the agent's --run-as list."""
        stdin, timeout_s = options.input, options.timeout_s
        self.loop = asyncio.get_running_loop()
        self.kill_grace_s = options.kill_grace_s
        self.kill_timer: asyncio.TimerHandle | None = None
        self.started = time.monotonic()
        self.max_output_bytes, self.sink = options.output_limit, sink
        self.buffers: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        self.kept = 0
        self.truncated = self.timed_out = self.cancelled = False
        self.exit_status: int | None = None
        self.finished: asyncio.Future[Finished] = self.loop.create_future()
        self.open_pipes: dict[int, int] = {}
        self.paused = False  # not reading the pipes: the reader of a stream is behind
        self.watcher = FdWatcher.of(self.loop)
        self.command_id = f"{_identity}.{_incarnation}.{next(_NUMBERS)}"
        script = f"export {MARKER}={self.command_id}; {script}"  # one line: line numbers stay
        # A warm shell reads its script on stdin and runs as the agent: not for these.
        cold = stdin is not None or run_as is not None or warm is None
        shell = None if cold else warm.take(script.encode() + b"\n")  # type: ignore[union-attr]
        if shell is None:
            shell = _spawn(script, env, with_stdin=stdin is not None, run_as=run_as)
        self.pid = shell.pid
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except OSError as exc:  # started but not watchable: it must not run on unseen
            if stdin is not None:
                os.close(_script_in(shell))
            _discard(shell)
            raise SpawnError(exc.errno, f"cannot watch the shell: {exc.strerror}") from None
        self.stdin_fd: int | None = None
        self.unwritten = memoryview(stdin or b"")
        if stdin is not None:
            self.stdin_fd = _script_in(shell)
            os.set_blocking(self.stdin_fd, False)
            self.loop.add_writer(self.stdin_fd, self._feed)
        for fd, stream in ((shell.out, STDOUT), (shell.err, STDERR)):
            self.open_pipes[fd] = stream
            self.watcher.watch(fd, lambda fd=fd: self._read(fd))  # type: ignore[misc]
        self.watcher.watch(self.pidfd, self._reap)
        self.timer = (
            self.loop.call_later(timeout_s, self._time_out) if timeout_s is not None else None
        )

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.watcher.forget(fd)
            os.close(fd)
            del self.open_pipes[fd]
            self._maybe_finish()
            return
        stream = self.open_pipes[fd]
        room = self.max_output_bytes - self.kept  # streamed or kept, the same cap
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if not data:
            return
        self.kept += len(data)
        if self.sink is None:
            self.buffers[stream].append(data)
        elif not self.sink(stream, data):
            self.truncated = True

    def _feed(self) -> None:
        """Write what the pipe takes of the command's input; at the end, close it (EOF)."""
        if self.stdin_fd is None:
            return
        try:
            written = os.write(self.stdin_fd, self.unwritten[:READ_CHUNK])
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the command exited or closed its stdin without reading it all
            written = len(self.unwritten)
        self.unwritten = self.unwritten[written:]
        if not self.unwritten:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd is not None:
            self.loop.remove_writer(self.stdin_fd)
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def _reap(self) -> None:
        self.watcher.forget(self.pidfd)
        os.close(self.pidfd)
        _, status = os.waitpid(self.pid, 0)  # it has exited: this only reaps it
        self.exit_status = os.waitstatus_to_exitcode(status)
        if self.timed_out or self.cancelled:
            self.loop.call_later(PIPE_GRACE_S + (self.kill_grace_s or 0), self._abandon_pipes)
        self._maybe_finish()

    def pause(self) -> None:
        """Stop reading the output pipes: when they fill, the command blocks on its writes."""
        if not self.paused:
            self.paused = True
            for fd in self.open_pipes:
                self.watcher.forget(fd)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            for fd in self.open_pipes:
                self.watcher.watch(fd, lambda fd=fd: self._read(fd))  # type: ignore[misc]

    def _abandon_pipes(self) -> None:
        """A killed command whose pipes are still open: someone we could not find holds them.
        Stop reading, so the command ends and frees its slot."""
        for fd in list(self.open_pipes):
            if not self.paused:
                self.watcher.forget(fd)
            os.close(fd)
            del self.open_pipes[fd]
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.exit_status is None or self.open_pipes or self.finished.done():
            return
        if self.timer is not None:
            self.timer.cancel()
        self._close_stdin()
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
        """SIGKILL the whole process group, then whatever left it but carries our marker."""
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.pid, signal.SIGKILL)
        if kill_marked(self.command_id):
            log.info("killed processes of command %s that had left its group", self.command_id)

    def _stop(self) -> None:
        """Timed out or cancelled: SIGKILL, or with a grace SIGTERM first and SIGKILL after it
        (the timer stays set after the shell ends: what it started may still be finishing)."""
        if self.kill_grace_s is None:
            self.kill()
            return
        if self.kill_timer is not None:  # already stopping: the SIGKILL is on its way
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        kill_marked(self.command_id, 1, sig=signal.SIGTERM, spare_group=self.pid)
        self.kill_timer = self.loop.call_later(self.kill_grace_s, self.kill)

    def cancel(self, *, grace: bool = True) -> None:
        """Stop the command as asked (SIGTERM and its grace first, if it has one); with
        grace=False SIGKILL at once, also while a grace already runs."""
        self.cancelled = True
        if grace:
            self._stop()
        else:
            self.kill()

    def _time_out(self) -> None:
        self.timed_out = True
        self._stop()
