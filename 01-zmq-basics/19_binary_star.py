"""Lesson 19, Binary Star: a primary and a backup server that decide between them which one
serves, and clients that follow.

zguide: chapter 4, "High-Availability Pair (Binary Star Pattern)".
Terms: Binary Star, primary, backup, active, passive, fail-over, split brain, peer expiry.

What it shows
  * Two servers, each with its own endpoint for clients. Each publishes its state (PUB) to
    the other (SUB) every HEARTBEAT_MS; what it hears from its peer, and whether a client
    asks it for something, are the only events its state machine knows.
  * They start as PRIMARY and BACKUP and settle as ACTIVE (serving) and PASSIVE (waiting).
    The rules are two tables and `next_state`, with no socket and no clock in them: the same
    function decides in the demo and in the test of every rule (tests/test_lessons.py).
  * Fail-over needs two things: the peer silent for PEER_EXPIRY_BEATS heartbeats, and a
    client asking the passive server for service. The second guards against split brain:
    if the two servers lose sight of each other but the clients still reach the active one,
    no client turns to the passive one, and it stays passive.
  * A restarted primary hears an active peer and goes passive: there is never a second
    active server (both active, or both passive, is an error each side reports).
  * The client is lesson 11's, with two endpoints: on a timeout it tries the other server.
    Step 02's coordinator is a single point of failure; issue 27's standby coordinator is
    this pattern applied to it.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> primary ROUTER: requests while it is active
  client REQ -> backup ROUTER: the same, after the fail-over
  backup SUB -> primary PUB: the primary's state, every heartbeat
  primary SUB -> backup PUB: the backup's state, every heartbeat

Try it
  python 19_binary_star.py server --primary     (and --backup in another terminal)
  python 19_binary_star.py client               (then kill the active server)
  python 19_binary_star.py demo                 (primary SIGKILLed, backup takes over, the
                                                 primary restarted goes passive)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `endpoint = endpoints[attempt % len(endpoints)]` -> `endpoint = endpoints[0]`: FAIL,
    "no reply after"
      A client that never turns to the backup never gets its service: the backup takes
      over only when a client asks it to.
  * `REQUESTS = 6` -> `REQUESTS = 12`: PASS, "24 of 24 answered"
      More requests on each side of the fail-over: the backup serves them all.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import threading
import time
from queue import Empty, Queue

import zmq

PRIMARY, BACKUP, ACTIVE, PASSIVE = "primary", "backup", "active", "passive"
CLIENT_REQUEST = "client request"  # the event besides the peer's states
HEARTBEAT_MS = 250  # each server publishes its state this often
PEER_EXPIRY_BEATS = 2  # a peer silent this many heartbeats may be taken over from
REPLY_TIMEOUT_MS, ATTEMPTS = 1000, 4  # the client's
REQUESTS = 6  # the demo's, on each side of the fail-over
WAIT_S = 5.0


class SplitBrainError(Exception):
    """Both servers active, or both passive: a configuration error, never to be resolved."""


# (this server's state, the peer's state it heard) -> its new state; any other pair: unchanged
ON_PEER = {
    (PRIMARY, BACKUP): ACTIVE,  # the backup is there and waiting: we serve
    (PRIMARY, ACTIVE): PASSIVE,  # restarted while the backup served: it goes on serving
    (BACKUP, ACTIVE): PASSIVE,
    (PASSIVE, PRIMARY): ACTIVE,  # the peer restarted: it goes passive when it hears us
    (PASSIVE, BACKUP): ACTIVE,
}
# the states that take a client's request when their peer is silent, and what they become
TAKE_OVER = {PRIMARY: ACTIVE, PASSIVE: ACTIVE}


def next_state(state: str, event: str, peer_expired: bool) -> tuple[str, bool]:
    """(the new state, whether a client request may be served) after `event`: a peer's state
    or CLIENT_REQUEST. Raises SplitBrainError on two actives or two passives."""
    if event in (ACTIVE, PASSIVE) and state == event:
        raise SplitBrainError(f"this server and its peer are both {state}")
    if event != CLIENT_REQUEST:
        return ON_PEER.get((state, event), state), False
    if state == ACTIVE:
        return ACTIVE, True
    if state in TAKE_OVER and peer_expired:  # the fail-over: a client asks, the peer is silent
        return TAKE_OVER[state], True
    return state, False  # refused, by not answering: the client turns to the other server


def server(primary: bool, frontend: str, state_out: str, state_in: str) -> None:
    ctx = zmq.Context()
    clients, pub, sub = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    clients.bind(frontend)
    pub.bind(state_out)
    sub.connect(state_in)
    sub.subscribe(b"")
    state = PRIMARY if primary else BACKUP
    print(f"server: {state} on {frontend}", flush=True)
    poller = zmq.Poller()
    poller.register(clients, zmq.POLLIN)
    poller.register(sub, zmq.POLLIN)
    heard_peer = float("-inf")
    next_beat = time.monotonic()
    while True:
        wait_ms = max(0, int((next_beat - time.monotonic()) * 1000))
        ready = dict(poller.poll(wait_ms))
        expired = time.monotonic() - heard_peer > PEER_EXPIRY_BEATS * HEARTBEAT_MS / 1000
        before = state
        if sub in ready:
            peer_state = sub.recv_string()
            heard_peer = time.monotonic()
            state, _ = next_state(state, peer_state, expired)
        if clients in ready:
            client, empty, request = clients.recv_multipart()
            state, serve = next_state(state, CLIENT_REQUEST, expired)
            if serve:
                clients.send_multipart([client, empty, f"{state} server did ".encode() + request])
        if state != before:
            print(f"server: {before} -> {state}", flush=True)
        if time.monotonic() >= next_beat:
            pub.send_string(state)
            next_beat = time.monotonic() + HEARTBEAT_MS / 1000


def ask(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoints: list[str], body: bytes, start: int
) -> tuple[bytes, int]:
    """Lesson 11's Lazy Pirate over two servers: (the reply, the index of the server that
    gave it). Begins with endpoints[start]; each timeout turns to the other."""
    for attempt in range(start, start + ATTEMPTS):
        endpoint = endpoints[attempt % len(endpoints)]
        with ctx.socket(zmq.REQ) as sock:
            sock.linger = 0
            sock.connect(endpoint)
            sock.send(body)
            if sock.poll(REPLY_TIMEOUT_MS):
                return sock.recv(), attempt % len(endpoints)
        print(f"client: no reply from {endpoint}, trying the other server", flush=True)
    raise TimeoutError(f"{body.decode()}: no reply after {ATTEMPTS} attempts")


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


class Pair:
    """The demo's two servers as processes, and their lines as they come (read on threads)."""

    def __init__(self) -> None:
        self.front = [free_endpoint(), free_endpoint()]
        self.states = [free_endpoint(), free_endpoint()]
        self.processes: list[subprocess.Popen[str]] = []
        self.lines: list[Queue[str]] = [Queue(), Queue()]
        for n in (0, 1):
            self.start(n)

    def start(self, n: int) -> None:
        role = "--primary" if n == 0 else "--backup"
        command = [
            sys.executable,
            __file__,
            "server",
            role,
            self.front[n],
            self.states[n],
            self.states[1 - n],
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        if n < len(self.processes):
            self.processes[n] = process
        else:
            self.processes.append(process)
        threading.Thread(target=self.read, args=(process, self.lines[n]), daemon=True).start()

    @staticmethod
    def read(process: subprocess.Popen[str], into: Queue[str]) -> None:
        for line in process.stdout or ():
            print(line, end="", flush=True)
            into.put(line)

    def wait_for(self, n: int, state: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while (
            not self.lines[n]
            .get(timeout=max(0.01, deadline - time.monotonic()))
            .rstrip()
            .endswith(f"-> {state}")
        ):
            pass

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def demo() -> int:
    pair = Pair()
    ctx = zmq.Context()
    answered: list[bytes] = []
    try:
        pair.wait_for(0, ACTIVE)
        pair.wait_for(1, PASSIVE)
        server = 0
        for n in range(REQUESTS):
            reply, server = ask(ctx, pair.front, b"request %d" % n, server)
            answered.append(reply)
        print("demo: SIGKILL to the primary", flush=True)
        pair.processes[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        reply, server = ask(ctx, pair.front, b"request %d" % REQUESTS, server)
        took_over_s = time.monotonic() - killed
        answered.append(reply)
        pair.start(0)  # back, as primary: it must hear the active backup and go passive
        pair.wait_for(0, PASSIVE)
        for n in range(REQUESTS + 1, 2 * REQUESTS):
            reply, server = ask(ctx, pair.front, b"request %d" % n, server)
            answered.append(reply)
    except (TimeoutError, Empty) as exc:
        print(f"FAIL 19_binary_star: {exc or 'a server did not reach the state it should'}")
        return 1
    finally:
        pair.stop()
        ctx.term()
    by_backup = sum(1 for reply in answered[REQUESTS:] if reply.startswith(b"active"))
    print(
        f"PASS 19_binary_star: {len(answered)} of {2 * REQUESTS} answered; the backup took over "
        f"{took_over_s:.2f} s after the primary's SIGKILL ({by_backup} answered by it), and the "
        "restarted primary went passive"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    srv = roles.add_parser("server", help="one of the pair")
    side = srv.add_mutually_exclusive_group(required=True)
    side.add_argument("--primary", action="store_true")
    side.add_argument("--backup", action="store_true")
    srv.add_argument("frontend", nargs="?")
    srv.add_argument("state_out", nargs="?")
    srv.add_argument("state_in", nargs="?")
    cli = roles.add_parser("client", help="ask the pair, following the active one")
    cli.add_argument("--requests", type=int, default=20)
    roles.add_parser("demo")
    args = parser.parse_args()
    defaults = {  # by hand: primary 5001 (peer states 5003), backup 5002 (5004)
        True: ("tcp://127.0.0.1:5001", "tcp://127.0.0.1:5003", "tcp://127.0.0.1:5004"),
        False: ("tcp://127.0.0.1:5002", "tcp://127.0.0.1:5004", "tcp://127.0.0.1:5003"),
    }
    try:
        if args.role == "server":
            given = (args.frontend, args.state_out, args.state_in)
            chosen = given if all(given) else defaults[args.primary]
            server(args.primary, *chosen)
        elif args.role == "client":
            ctx, where, at = zmq.Context(), [defaults[True][0], defaults[False][0]], 0
            for n in range(args.requests):
                reply, at = ask(ctx, where, b"request %d" % n, at)
                print(reply.decode())
        else:
            return demo()
    except (zmq.ZMQError, TimeoutError, SplitBrainError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
