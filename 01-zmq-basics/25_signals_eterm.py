"""Lesson 25, signals and ETERM: stopping cleanly, from a signal to a blocked recv, from one
thread to the others, and what LINGER makes term() wait for.

zguide: chapter 2, "Handling Interrupt Signals" and "Handling Errors and ETERM"; zmq_ctx_term(3),
ZMQ_LINGER in zmq_setsockopt(3).
Terms: SIGINT, SIGTERM, EINTR, ETERM (ContextTerminated), linger, clean shutdown.

What it shows
  * A process blocked in recv() still hears signals: libzmq returns EINTR, pyzmq runs the
    Python handler, and whatever the handler raises comes out of recv(). Ctrl-C (SIGINT) is
    KeyboardInterrupt; SIGTERM, what systemd and kill send, does nothing useful until you
    install a handler for it. Either way the `finally` closes the sockets and the context.
  * ctx.term() in one thread makes every blocking call on that context, in every other
    thread, raise ContextTerminated (ETERM). That is the signal to close your socket and
    leave; term() returns once every socket of the context is closed.
  * term() also waits for messages still queued to go out, for at most each socket's LINGER:
    -1 (pyzmq's default, as libzmq's) is for ever, so a message for a peer that never comes
    would hold the process at exit; 0 drops it at once.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  nobody PUSH -> worker PULL: nothing: only a signal ends the blocked recv()

Try it
  python 25_signals_eterm.py worker tcp://127.0.0.1:5555    (then Ctrl-C it, or kill it)
  python 25_signals_eterm.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `signal.signal(signal.SIGTERM, stop_on_sigterm)` -> `pass`: FAIL, "killed by SIGTERM"
      With no handler, SIGTERM's default ends the process on the spot: no finally, nothing
      closed, and the demo sees the signal as its exit status.
  * `LINGER_MS = 200` -> `LINGER_MS = 600`: PASS, "term() waited for LINGER (600 ms)"
      term() waits exactly as long as LINGER allows for the message nobody will take.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

import zmq

LINGER_MS = 200  # what the linger case allows for a message that can never be delivered
WAIT_S = 5.0


class StopSignalError(Exception):
    """Raised by the SIGTERM handler, out of whatever call was blocking."""


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise StopSignalError


def worker(endpoint: str) -> int:
    """Block in recv until a signal; close everything on the way out, and say so."""
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(endpoint)
    try:  # from here on a signal, wherever it lands, reaches the finally
        print("worker: ready, blocked in recv()", flush=True)
        sock.recv()  # nobody sends: only a signal ends this
        return 0
    except (StopSignalError, KeyboardInterrupt) as exc:
        print(f"worker: {type(exc).__name__} came out of recv()", flush=True)
        return 130 if isinstance(exc, KeyboardInterrupt) else 0
    finally:
        sock.close(linger=0)
        ctx.term()
        print("worker: socket closed, context terminated", flush=True)


def signalled(sig: signal.Signals) -> tuple[int | None, str]:
    """Start a worker, send it `sig` once it blocks; (its exit status, what it said)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "worker", free_endpoint()], stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + WAIT_S
    while not any("ready" in line for line in lines) and time.monotonic() < deadline:
        reader.join(0.02)  # the reader appends as lines come; this only spaces the looks
    process.send_signal(sig)
    try:
        status: int | None = process.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        status = None
    reader.join(WAIT_S)
    return status, "".join(lines)


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def eterm_in_a_thread() -> str:
    """A thread blocked in recv; term() from here: what the thread saw."""
    ctx = zmq.Context()
    seen: list[str] = []

    def blocked() -> None:
        sock = None
        try:  # if term() comes first, making the socket is what raises ETERM: the same lesson
            sock = ctx.socket(zmq.PULL)
            sock.bind("inproc://nobody-sends")
            sock.recv()
        except zmq.ContextTerminated:
            seen.append("ContextTerminated")
        finally:
            if sock is not None:
                sock.close()  # term() returns once this is done

    thread = threading.Thread(target=blocked)
    thread.start()
    terminated = threading.Thread(target=ctx.term)
    terminated.start()
    terminated.join(WAIT_S)
    thread.join(WAIT_S)
    return seen[0] if seen and not terminated.is_alive() else "term() did not return"


def term_with_linger(linger_ms: int) -> float:
    """Seconds term() took with one undeliverable message queued on a socket of `linger_ms`."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.linger = linger_ms
    sock.connect(free_endpoint())  # nobody will ever listen there
    sock.send(b"for nobody")  # queued, waiting for a peer
    started = time.monotonic()  # LINGER counts from close(), so the clock starts before it
    sock.close()
    ctx.term()
    return time.monotonic() - started


def demo() -> int:
    by_term, by_int = signalled(signal.SIGTERM), signalled(signal.SIGINT)
    eterm = eterm_in_a_thread()
    lingered, dropped = term_with_linger(LINGER_MS), term_with_linger(0)
    print(f"SIGTERM: exit status {by_term[0]}; SIGINT: exit status {by_int[0]}")
    print(f"a thread blocked in recv() while term() ran saw: {eterm}")
    print(f"term() with LINGER {LINGER_MS} ms: {lingered:.2f} s; with LINGER 0: {dropped:.2f} s")
    problems = []
    for name, (status, said) in (("SIGTERM", by_term), ("SIGINT", by_int)):
        if status is not None and status < 0:
            problems.append(f"{name}: killed by {signal.Signals(-status).name}, nothing closed")
        elif status not in (0, 130) or "context terminated" not in said:
            problems.append(f"{name}: exit status {status}, no clean close")
    if eterm != "ContextTerminated":
        problems.append(f"ETERM: {eterm}")
    # libzmq's timer may fire a little early: LINGER within 10% is LINGER
    if not 0.9 * LINGER_MS / 1000 <= lingered < LINGER_MS / 1000 + 1 or dropped > 0.5:
        problems.append(
            f"term() took {lingered:.2f} s with LINGER {LINGER_MS} ms, {dropped:.2f} s with 0"
        )
    if problems:
        print("FAIL 25_signals_eterm: " + "; ".join(problems))
        return 1
    print(
        "PASS 25_signals_eterm: SIGTERM and SIGINT came out of a blocked recv() and everything "
        f"was closed; term() ended a blocked thread with ETERM; term() waited for LINGER "
        f"({LINGER_MS} ms), and not at all with 0"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("worker", help="block in recv until a signal").add_argument("endpoint")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        return worker(args.endpoint) if args.role == "worker" else demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
