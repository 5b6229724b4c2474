"""Lesson 11, Lazy Pirate: a REQ client that survives a server that dies or stalls.

zguide: chapter 4, "Client-Side Reliability (Lazy Pirate Pattern)"; the libzmq reference,
zmq_setsockopt: ZMQ_REQ_RELAXED and ZMQ_REQ_CORRELATE.
Terms: Lazy Pirate, retry, stale reply, REQ_RELAXED, REQ_CORRELATE.

What it shows
  * A REQ socket that sent and never hears back is stuck: lockstep (lesson 01) forbids a
    second send. The Lazy Pirate client polls with a timeout and, when no reply comes,
    closes the stuck socket, opens a new one and sends again; after a few tries it gives up.
    A server restarted on the same port answers the retry.
  * The modern alternative keeps the socket: REQ_RELAXED allows a new send while a reply is
    still owed. Alone it is a trap: the late reply to the first attempt is taken for the
    answer to the second. REQ_CORRELATE tags each request with an id so REQ drops replies to
    anything but the latest; the two options go together.
  * Retries mean a request may run twice (the stalled server answers both): fine for reads
    and idempotent work, not for "charge the card". Step 02 adds request ids for that.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> server REP: a request; on a timeout a new socket sends it again

Try it
  python 11_lazy_pirate.py server                  (stop it with Ctrl-C mid-run, start again)
  python 11_lazy_pirate.py client --count 20
  python 11_lazy_pirate.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `ATTEMPTS = 4` -> `ATTEMPTS = 1`: FAIL, "no reply from"
      No retry: the request sent to the killed server is never answered, and the client
      gives up after its one attempt.
  * `sock.req_correlate = correlate  # and` -> `sock.req_correlate = False  # and`: FAIL,
    "with REQ_CORRELATE the resend got b'reply to attempt 1'"
      Without the ids, REQ takes the stalled server's late answer to attempt 1 as the reply
      to attempt 2.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import zmq

REPLY_TIMEOUT_MS = 1000  # how long the client waits before it calls the server dead
ATTEMPTS = 4  # the first try and three retries
Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


def server(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(endpoint)
    print(f"server: listening on {endpoint}", flush=True)
    while True:
        request = sock.recv()
        sock.send(b"reply to " + request)


class LazyPirateClient:
    """Reliable request-reply on top of REQ: poll, and on timeout replace the socket and resend."""

    def __init__(self, ctx: Context, endpoint: str, on_retry: Callable[[int], None]) -> None:
        self.ctx, self.endpoint, self.on_retry = ctx, endpoint, on_retry
        self.retries = 0
        self.sock = self.open()

    def open(self) -> Socket:
        sock = self.ctx.socket(zmq.REQ)
        sock.linger = 0  # a request to a dead server must not keep the process alive on close
        sock.connect(self.endpoint)
        return sock

    def request(self, body: bytes) -> bytes:
        for attempt in range(1, ATTEMPTS + 1):
            self.sock.send(body)
            if self.sock.poll(REPLY_TIMEOUT_MS):
                return self.sock.recv()
            self.retries += 1
            print(f"client: no reply within {REPLY_TIMEOUT_MS} ms (attempt {attempt}), resending")
            # The classic way out of REQ's "waiting for a reply" state; REQ_RELAXED with
            # REQ_CORRELATE (across_a_stall) is the other, keeping the socket.
            self.sock.close()
            self.sock = self.open()
            self.on_retry(attempt)
        raise TimeoutError(f"no reply from {self.endpoint} after {ATTEMPTS} attempts")


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def start_server(endpoint: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "server", endpoint])


def across_a_kill(ctx: Context, requests: int = 6, kill_before: int = 3) -> tuple[int, int]:
    """Lazy Pirate through a SIGKILLed server and its replacement: (answered, retries)."""
    endpoint = free_endpoint()
    servers = [start_server(endpoint)]

    def restart(attempt: int) -> None:
        if len(servers) == 1:  # one replacement, on the very same port
            print(f"client: starting a new server on {endpoint}")
            servers.append(start_server(endpoint))

    client = LazyPirateClient(ctx, endpoint, on_retry=restart)
    answered = 0
    try:
        for number in range(requests):
            if number == kill_before:
                print(f"demo: killing the server (SIGKILL) before request {number}")
                servers[0].kill()
                servers[0].wait()  # gone, and its port with it
            body = b"request %d" % number
            answered += client.request(body) == b"reply to " + body
    finally:
        client.sock.close()
        for process in servers:
            process.kill()
            process.wait()
    return answered, client.retries


def across_a_stall(ctx: Context, correlate: bool) -> bytes:
    """Resend on one REQ_RELAXED socket while the server is frozen; return what the resend got."""
    endpoint = free_endpoint()
    stalled = start_server(endpoint)
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.req_relaxed = True  # a new send is allowed while a reply is owed
    sock.req_correlate = correlate  # and, if set, only the newest request's reply is accepted
    sock.connect(endpoint)
    try:
        sock.send(b"warm-up")  # the server is up and answering before we freeze it
        if not sock.poll(5000):
            raise TimeoutError("the server did not answer the warm-up")
        sock.recv()
        stalled.send_signal(signal.SIGSTOP)  # frozen: alive, connected, silent
        sock.send(b"attempt 1")
        sock.poll(REPLY_TIMEOUT_MS)  # nothing comes
        sock.send(b"attempt 2")  # REQ_RELAXED lets us; a plain REQ would raise EFSM here
        stalled.send_signal(signal.SIGCONT)  # it wakes and answers both attempts, in order
        return sock.recv() if sock.poll(5000) else b"(nothing)"
    finally:
        sock.close()
        stalled.kill()
        stalled.wait()


def demo() -> int:
    ctx = zmq.Context()
    try:
        answered, retries = across_a_kill(ctx)
    except TimeoutError as exc:  # the client gave up: no retry reached a live server
        ctx.term()
        print(f"FAIL 11_lazy_pirate: {exc}")
        return 1
    print(f"Lazy Pirate: {answered} of 6 answered across a server SIGKILL, {retries} resent")
    relaxed = across_a_stall(ctx, correlate=False)
    print(f"REQ_RELAXED alone, resent during a stall, got: {relaxed!r}  (the stale reply)")
    correlated = across_a_stall(ctx, correlate=True)
    print(f"REQ_RELAXED + REQ_CORRELATE, same stall, got: {correlated!r}")
    ctx.term()
    problems = [
        *([f"{answered} of 6 answered across the kill"] if answered != 6 else []),
        *(["nothing was resent, so no retry was shown"] if retries < 1 else []),
        *([f"REQ_RELAXED alone got {relaxed!r}"] if relaxed != b"reply to attempt 1" else []),
        *(
            [f"with REQ_CORRELATE the resend got {correlated!r}"]
            if correlated != b"reply to attempt 2"
            else []
        ),
    ]
    if problems:
        print("FAIL 11_lazy_pirate: " + "; ".join(problems))
        return 1
    print(
        f"PASS 11_lazy_pirate: {answered} of 6 answered across a kill "
        f"({retries} resent); CORRELATE dropped the stale reply RELAXED alone took"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server").add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555")
    client = roles.add_parser("client", help="send with retries")
    client.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555")
    client.add_argument("--count", type=int, default=10)
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "server":
            server(args.endpoint)
        elif args.role == "client":
            ctx = zmq.Context()
            pirate = LazyPirateClient(ctx, args.endpoint, on_retry=lambda attempt: None)
            for number in range(args.count):
                print(pirate.request(b"request %d" % number).decode())
            pirate.sock.close()
            ctx.term()
        else:
            return demo()
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
