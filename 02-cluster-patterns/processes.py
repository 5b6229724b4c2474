"""Processes and threads for demos, benchmarks, the lab and the tests: start roles, wait for
them to say they are ready, never let one outlive the run, and print the verdict line.

Nothing of the product imports this (import-linter checks): a node agent has no use for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from zcl.cli import READY_MARK, Sock
from zcl.errors import CliError

ANY_LOCAL_PORT = "tcp://127.0.0.1:*"


class PeerWatch:
    """Counts peers that finished the ZMTP handshake with a socket, so a role can wait for them.

    Connections are asynchronous: a peer that called connect() may not be attached yet, and
    messages sent before then go to whoever is. Start the watch BEFORE the peers connect (a
    monitor only reports what happens after it is attached), then wait() instead of sleeping.
    """

    def __init__(self, sock: Sock) -> None:
        self.sock = sock
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.seen = 0

    def wait(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.seen < count:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self.monitor.poll(remaining_ms):
                raise CliError(f"only {self.seen} of {count} peers connected within {timeout_s}s")
            if recv_monitor_message(self.monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.seen += 1

    def __enter__(self) -> PeerWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)


FIGURES_MARK = "figures: "


def verdict(lesson: str, ok: bool, detail: str, figures: dict[str, Any] | None = None) -> int:
    """Print the demo's last line, which the tour shows, and return its exit status.

    `figures`, what the demo measured, go on the line before as JSON: `tour --json` saves them
    and the documents' figures are rendered from that file (zcl_tools.figures).
    """
    if figures is not None:
        print(FIGURES_MARK + json.dumps(figures, sort_keys=True))
    print(f"{'PASS' if ok else 'FAIL'} {lesson}: {detail}", flush=True)
    return 0 if ok else 1


class RoleThread(threading.Thread):
    """A role run in a thread whose exception is re-raised by join(), so no failure is silent."""

    def __init__(self, target: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        super().__init__(name=name or target.__name__, daemon=True)
        self._target_fn = target
        self._args = args
        self.result: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn(*self._args)
        except BaseException as exc:  # handed to join() in the caller's thread
            self._error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.is_alive():
            raise CliError(f"role {self.name} did not finish within {timeout}s")
        if self._error is not None:
            raise self._error


@dataclass
class Child:
    """A role running as a child process, started by Roles.spawn()."""

    name: str
    process: subprocess.Popen[str]
    endpoint: str
    output: list[str] = field(default_factory=list)
    said_ready: threading.Event = field(default_factory=threading.Event)  # or its output ended
    new_output: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_output(self, found: Callable[[str], bool], timeout_s: float) -> str | None:
        """The first line of output for which `found` is true, waiting for it up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self.new_output:
            seen = 0
            while True:
                for line in self.output[seen:]:
                    if found(line):
                        return line
                seen = len(self.output)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and seen == len(self.output)):
                    return None
                self.new_output.wait(remaining)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a real signal and reap the process, the way a crash or an operator would."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=10)

    def signal(self, sig: int) -> None:
        """Send a signal without waiting, e.g. SIGSTOP to freeze the process, SIGCONT to thaw it."""
        if self.process.poll() is None:
            self.process.send_signal(sig)


class Roles:
    """Start roles as child processes; on exit every one of them is stopped and reaped.

    `module` is what `python -m` runs (a dotted module name).
    """

    def __init__(self, module: str, echo: bool = False) -> None:
        self.module = module
        self.echo = echo
        self.children: list[Child] = []
        self._drainers: list[threading.Thread] = []

    def spawn(
        self, name: str, *args: str, timeout_s: float = 15.0, module: str | None = None
    ) -> Child:
        """Run `python -m MODULE ARGS` and wait for its "... ready on ENDPOINT" line."""
        return self.spawn_many([(name, list(args))], timeout_s=timeout_s, module=module)[0]

    def spawn_many(
        self, roles: list[tuple[str, list[str]]], timeout_s: float = 15.0, module: str | None = None
    ) -> list[Child]:
        """Start every role at once, then wait until each has said it is ready."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        started = []
        for name, args in roles:
            cmd = [sys.executable, "-m", module or self.module, *args]
            process = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
            child = Child(name=name, process=process, endpoint="")
            self.children.append(child)
            started.append(child)
            # One reader per child from the start: it finds the ready line, then keeps the pipe
            # drained so a chatty child never blocks on it.
            drainer = threading.Thread(target=self._drain, args=(child,), daemon=True)
            drainer.start()
            self._drainers.append(drainer)
        deadline = time.monotonic() + timeout_s
        for child in started:
            child.said_ready.wait(max(deadline - time.monotonic(), 0))
            if not child.endpoint:
                raise CliError(f"{child.name} did not become ready: {' | '.join(child.output)}")
        return started

    def _drain(self, child: Child) -> None:
        if child.process.stdout is None:  # always piped by spawn_many
            return
        for line in child.process.stdout:
            with child.new_output:
                child.output.append(line.rstrip())
                child.new_output.notify_all()
            if not child.endpoint and READY_MARK in line:
                child.endpoint = line.rsplit(READY_MARK, 1)[1].strip()
                child.said_ready.set()
            if self.echo:
                print(f"  [{child.name}] {line.rstrip()}", flush=True)
        child.said_ready.set()  # the output ended: whoever waits must not wait any longer
        with child.new_output:
            child.new_output.notify_all()

    def __enter__(self) -> Roles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGCONT)  # a frozen child cannot act on SIGTERM
                child.process.terminate()
        for child in self.children:
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=5)
        for drainer in self._drainers:
            drainer.join(timeout=5)
        for child in self.children:
            if child.process.stdout is not None:
                child.process.stdout.close()
