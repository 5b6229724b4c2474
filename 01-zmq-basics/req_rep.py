"""REQ-REP: strict request-reply, its state machine, and a client that survives a dead server.

What it shows
  * A REP server answers each request; a REQ client must alternate send, recv, send, recv.
    Breaking that order raises EFSM: "operation cannot be accomplished in current state".
  * A REQ socket that sent and never hears back is stuck for good. The Lazy Pirate client
    polls with a timeout and, when no reply comes, closes the stuck socket, opens a new one
    and sends again.

What you will see (demo)
  The EFSM error, then ten requests. The server is killed with SIGKILL before request 4; the
  client times out, a new server starts on the same port, and the retry gets its answer.

Try it
  python 01-zmq-basics/req_rep.py server --endpoint tcp://127.0.0.1:5555
  python 01-zmq-basics/req_rep.py client --endpoint tcp://127.0.0.1:5555 --count 50
  Stop the server with Ctrl-C mid-run and start it again: the client retries and carries on.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq

from zmq_basics import lesson

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
ENDPOINT = "tcp://127.0.0.1:5555"
REPLY_TIMEOUT_S = 1.0  # how long the client waits before it calls the server dead
ATTEMPTS = 4  # first try plus three retries

log = logging.getLogger("req_rep")


def serve(where: str) -> None:
    """Answer every request until killed; REP handles the reply envelope for us."""
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.REP)
        lesson.announce_ready("server", lesson.bind(sock, where))
        while True:
            request = sock.recv()
            sock.send(b"reply to " + request)


class LazyPirateClient:
    """Reliable request-reply on top of REQ: poll, and on timeout replace the socket and resend."""

    def __init__(
        self,
        ctx: lesson.Ctx,
        where: str,
        on_retry: Callable[[int], None] | None = None,
    ) -> None:
        self.ctx, self.where, self.on_retry = ctx, where, on_retry
        self.retries = 0
        self.sock = self._open()

    def _open(self) -> lesson.Sock:
        sock = self.ctx.socket(zmq.REQ)
        sock.linger = 0  # a request to a dead server must not keep the process alive on close
        lesson.connect(sock, self.where)
        return sock

    def request(self, body: bytes) -> bytes:
        for attempt in range(1, ATTEMPTS + 1):
            self.sock.send(body)
            if self.sock.poll(int(REPLY_TIMEOUT_S * 1000), zmq.POLLIN):
                return self.sock.recv()
            self.retries += 1
            log.info(
                "no reply within %.1fs (attempt %d): new socket, resend", REPLY_TIMEOUT_S, attempt
            )
            self.sock.close()  # the only way out of REQ's "waiting for a reply" state
            self.sock = self._open()
            if self.on_retry:
                self.on_retry(attempt)
        raise lesson.LessonError(f"no reply from {self.where} after {ATTEMPTS} attempts")

    def close(self) -> None:
        self.sock.close()


def show_efsm(ctx: lesson.Ctx, where: str) -> str:
    """Send twice in a row on REQ and return the error libzmq gives."""
    with ctx.socket(zmq.REQ) as sock:
        sock.linger = 0
        lesson.connect(sock, where)
        sock.send(b"first")
        try:
            sock.send(b"second, without reading the reply")
        except zmq.ZMQError as exc:
            return f"errno {exc.errno} ({'EFSM' if exc.errno == zmq.EFSM else '?'}): {exc.strerror}"
        return "no error"


@dataclass
class ReqRepDemo:
    efsm: str
    answered: int
    requests: int
    retries: int


def demo(requests: int = 10, kill_before: int = 3) -> ReqRepDemo:
    with lesson.Roles("req_rep") as roles, zmq.Context() as ctx:
        server = roles.spawn("server", "server", "--endpoint", lesson.ANY_LOCAL_PORT)
        efsm = show_efsm(ctx, server.endpoint)
        print(f"REQ sent twice in a row -> {efsm}")

        def restart_server(attempt: int) -> None:
            if len(roles.children) == 1:  # bring one replacement up, on the very same port
                print(f"attempt {attempt} timed out: starting a new server on {server.endpoint}")
                roles.spawn("server-2", "server", "--endpoint", server.endpoint)

        client = LazyPirateClient(ctx, server.endpoint, on_retry=restart_server)
        answered = 0
        for number in range(requests):
            if number == kill_before:
                print(f"killing the server (SIGKILL) before request {number}")
                server.kill()
            body = f"request {number}".encode()
            answered += client.request(body) == b"reply to " + body
        client.close()
        return ReqRepDemo(efsm, answered, requests, client.retries)


def cmd_demo(_: argparse.Namespace) -> int:
    result = demo()
    ok = "EFSM" in result.efsm and result.answered == result.requests and result.retries >= 1
    return lesson.verdict(
        "req_rep",
        ok,
        f"{result.answered}/{result.requests} answered across a server kill, "
        f"{result.retries} retried",
        {"requests": result.requests, "answered": result.answered, "retries": result.retries},
    )


def cmd_client(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        client = LazyPirateClient(ctx, args.endpoint)
        for number in range(args.count):
            log.info("%s", client.request(f"request {number}".encode()).decode())
        client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    lesson.add_role(
        roles, "server", lambda a: serve(a.endpoint), "answer requests with REP", endpoint=ENDPOINT
    )
    client = lesson.add_role(roles, "client", cmd_client, "send with retries", endpoint=ENDPOINT)
    client.add_argument("--count", type=lesson.positive_int, default=10)
    lesson.add_role(roles, "demo", cmd_demo, "run both roles and check the lesson")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
