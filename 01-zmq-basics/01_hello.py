"""Lesson 01, hello: a REP server and a REQ client, and the one rule REQ-REP enforces.

zguide: chapter 1, "Ask and Ye Shall Receive".
Terms: socket type, REQ, REP, bind, connect, endpoint, EFSM.

What it shows
  * The server binds a REP socket and answers each request; the client connects a REQ socket,
    sends, then receives. That is the whole protocol: ZeroMQ frames the messages and opens and
    re-opens the TCP connection. Nothing in a reply names its request: a REQ socket allows
    one request at a time, so the next reply is taken as the answer to it (lesson 11 shows
    where that breaks, and REQ_CORRELATE).
  * REQ and REP move in lockstep: send, recv, send, recv. Sending twice in a row raises EFSM
    ("operation cannot be accomplished in current state"), ZeroMQ's way of saying the socket's
    state machine forbids it.
  * The client may start first: connect() works before anyone binds, and the request waits
    in the client's queue until the server is there.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> server REP: "Hello n", then "World" back

Try it
  python 01_hello.py server                       (in one terminal)
  python 01_hello.py client --count 5             (in another)
  python 01_hello.py demo                         (both roles, checked, in one command)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `sock.send(b"World")` -> `sock.send(b"Earth")`: PASS, "(b'Earth')"
      The demo runs this very file as its server, so it prints what your server said.
  * `sock.send(b"World")` -> `pass`: FAIL, "0 of 3 answered"
      A REP that never answers: its next recv() fails with EFSM (a REP must reply before it
      may read again), and the client's poll gives up after REPLY_WAIT_MS; a bare recv()
      would have waited for ever.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import zmq

REPLY_WAIT_MS = 5000  # a demo must end even if the server never comes up


def server(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(endpoint)
    print(f"server: listening on {endpoint}", flush=True)
    while True:
        request = sock.recv()
        print(f"server: got {request!r}", flush=True)
        sock.send(b"World")  # REP sends the reply to whoever asked: no address needed


def client(endpoint: str, count: int) -> list[bytes]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0  # on close, drop anything unsent instead of waiting for the server
    sock.connect(endpoint)
    replies = []
    for number in range(count):
        sock.send(b"Hello %d" % number)
        if not sock.poll(REPLY_WAIT_MS):  # recv() alone would wait for ever
            print(f"client: no reply within {REPLY_WAIT_MS} ms")
            break
        reply = sock.recv()
        print(f"client: sent Hello {number}, got {reply!r}")
        replies.append(reply)
    sock.close()
    ctx.term()
    return replies


def send_twice(endpoint: str) -> str:
    """Break the lockstep on purpose and return the error ZeroMQ gives."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(endpoint)
    sock.send(b"first")
    try:
        sock.send(b"second, before reading the first reply")
        outcome = "no error"
    except zmq.ZMQError as exc:
        outcome = f"{'EFSM' if exc.errno == zmq.EFSM else exc.errno}: {exc.strerror}"
    sock.close()
    ctx.term()
    return outcome


def free_endpoint() -> str:
    """A TCP port nobody uses right now, asked of the operating system."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo(count: int) -> int:
    endpoint = free_endpoint()
    # Run this very file as the server, so an edited copy demonstrates its own edit.
    server_process = subprocess.Popen([sys.executable, __file__, "server", endpoint])
    try:
        # The client starts without waiting for the server: its requests queue until it binds.
        replies = client(endpoint, count)
        twice = send_twice(endpoint)
        print(f"REQ sent twice in a row -> {twice}")
    finally:
        server_process.kill()
        server_process.wait()
    ok = len(replies) == count and twice.startswith("EFSM")
    answers = ", ".join(sorted({repr(reply) for reply in replies})) or "nothing"
    print(f"{'PASS' if ok else 'FAIL'} 01_hello: {len(replies)} of {count} answered ({answers})")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    for role in ("server", "client"):
        sub = roles.add_parser(role)
        sub.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555")
    roles.choices["client"].add_argument("--count", type=int, default=3)
    roles.add_parser("demo").add_argument("--count", type=int, default=3)
    args = parser.parse_args()
    if args.role != "server" and args.count < 1:
        parser.error("--count must be at least 1")
    try:
        if args.role == "server":
            server(args.endpoint)
        elif args.role == "client":
            client(args.endpoint, args.count)
        else:
            return demo(args.count)
    except zmq.ZMQError as exc:  # a bad endpoint, a port in use: one line, not a traceback
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
