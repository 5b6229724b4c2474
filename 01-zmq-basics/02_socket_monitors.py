"""Lesson 02, socket monitors: watch connections come and go, and wait for a peer, never sleep.

zguide: chapter 2, "Missing Message Problem Solver" (why to wait for a peer); monitors
themselves are in the libzmq reference, zmq_socket_monitor.
Terms: monitor socket, event, ZMTP handshake, reconnect.

What it shows
  * connect() and bind() return at once; the connection is made later, in ZeroMQ's own I/O
    thread, and retried for ever. Your code never sees it happen unless it asks.
  * A monitor is an extra socket on which ZeroMQ reports what happens to another socket's
    connections: CONNECT_RETRIED while nobody listens, CONNECTED when TCP is up,
    HANDSHAKE_SUCCEEDED when the peer has spoken ZMTP and messages can really flow,
    DISCONNECTED when it goes away.
  * This is how a program waits for a peer: block on the monitor (with a timeout) until the
    handshake event arrives. A sleep() would be too short on a busy machine and too long on
    an idle one; every later lesson that needs its peers waits this way.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> server REP: "ping" echoed, once the monitor saw the handshake

Try it
  python 02_socket_monitors.py watch tcp://127.0.0.1:5555    (prints every event, for ever)
  python 02_socket_monitors.py server tcp://127.0.0.1:5555   (start, stop with Ctrl-C, restart)
  python 02_socket_monitors.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `client.connect(endpoint)  # nobody listens yet` ->
    `client.reconnect_ivl = -1; client.connect(endpoint)`: FAIL, "no CONNECT_RETRIED"
      RECONNECT_IVL = -1 means "never reconnect": the refused first attempt is the last,
      so no server started later is ever reached, and the monitor says so.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

WAIT_MS = 5000


def server(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(endpoint)
    print(f"server: listening on {endpoint}", flush=True)
    while True:
        sock.send(sock.recv())


def watch(endpoint: str) -> None:
    """Connect a REQ socket and print every event its monitor reports, until interrupted."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    monitor = sock.get_monitor_socket()  # all events; pass a bit mask to choose some
    sock.connect(endpoint)
    started = time.monotonic()
    while True:
        event = recv_monitor_message(monitor)
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"{elapsed_ms:8.1f} ms  {zmq.Event(event['event']).name}", flush=True)


def wait_for(monitor: zmq.Socket[bytes], wanted: zmq.Event, log: list[str]) -> bool:
    """Read events until `wanted` arrives (True) or WAIT_MS pass without it (False)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
        if not monitor.poll(left_ms):
            break
        event = zmq.Event(recv_monitor_message(monitor)["event"])
        log.append(str(event.name))
        if event == wanted:
            return True
    return False


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    endpoint = free_endpoint()
    ctx = zmq.Context()
    client = ctx.socket(zmq.REQ)
    client.linger = 0
    monitor = client.get_monitor_socket()
    client.connect(endpoint)  # nobody listens yet
    steps: list[tuple[str, zmq.Event, bool]] = []

    def step(what: str, wanted: zmq.Event) -> None:
        started, log = time.monotonic(), list[str]()
        seen = wait_for(monitor, wanted, log)
        took_ms = (time.monotonic() - started) * 1000
        print(f"{what:34} {took_ms:6.1f} ms  {' '.join(log) or '(no event)'}")
        steps.append((what.rstrip(":"), wanted, seen))

    step("nobody listening:", zmq.EVENT_CONNECT_RETRIED)
    answered = False
    first = subprocess.Popen([sys.executable, __file__, "server", endpoint])
    second = None
    try:
        step("server started:", zmq.EVENT_HANDSHAKE_SUCCEEDED)
        client.send(b"ping")  # safe now: the handshake is done, the message has a peer
        answered = bool(client.poll(WAIT_MS)) and client.recv() == b"ping"
        first.kill()  # SIGKILL: the server gets no chance to say goodbye
        first.wait()
        step("server killed:", zmq.EVENT_DISCONNECTED)
        second = subprocess.Popen([sys.executable, __file__, "server", endpoint])
        step("a new server on the same port:", zmq.EVENT_HANDSHAKE_SUCCEEDED)
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
                process.wait()
    client.disable_monitor()
    monitor.close(linger=0)
    client.close()
    ctx.term()
    ok = all(seen for _, seen, _ in steps) and bool(answered)
    missed = [f"no {wanted.name} when {what}" for what, wanted, seen in steps if not seen]
    print(
        f"{'PASS' if ok else 'FAIL'} 02_socket_monitors: "
        f"{sum(seen for _, _, seen in steps)} of {len(steps)} awaited events seen"
        + (f" ({'; '.join(missed)})" if missed else ", reconnected by itself, no sleep")
        + ("" if answered else f"; the ping had no answer in {WAIT_MS} ms")
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server").add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555")
    roles.add_parser("watch").add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "server":
            server(args.endpoint)
        elif args.role == "watch":
            watch(args.endpoint)
        else:
            return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
