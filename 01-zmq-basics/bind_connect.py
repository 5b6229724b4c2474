"""bind() versus connect(): who does which, why order does not matter, automatic reconnection.

What it shows
  * Bind on the side that is stable and known (a broker, a coordinator, a node agent);
    connect from the side that comes and goes (clients, workers). Either socket type can do
    either: binding is about addresses, not about who sends first.
  * Connect before bind works: the connecting socket queues messages and retries until the
    other side binds.
  * When the bound side restarts, connected sockets reconnect on their own (every
    RECONNECT_IVL, 100 ms by default) and queued messages go through.
  * IMMEDIATE=1 stops that queueing: with no finished connection, a send fails with EAGAIN
    instead of piling messages up for a peer that may never come.

What you will see (demo)
  A message sent before its server existed, a reply after the server was replaced, and the
  difference IMMEDIATE makes to a send with nobody listening.

Try it
  Set RECONNECT_IVL_MAX on the client in `survive_restart` and watch the retry interval back off.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from zmq_basics import lesson

WAIT_MS = 3000


def unused_endpoint() -> str:
    """Ask the OS for a free port, so the lesson can connect to it before anyone binds it.

    A plain socket releases its port as soon as it is closed; a ZeroMQ socket does not (see
    serve_one), so it would be the wrong tool for this.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def serve_one(ctx: lesson.Ctx, where: str) -> bytes | None:
    """Bind a fresh ROUTER, answer one request, release the port; return the request or None."""
    with ctx.socket(zmq.ROUTER) as server:
        lesson.bind(server, where)
        body = None
        if server.poll(WAIT_MS):
            identity, body = server.recv_multipart()
            server.send_multipart([identity, b"ack " + body])
        # close() and unbind() return at once while libzmq's I/O thread closes the listening
        # socket later; a new bind on the same port right after could fail with "in use".
        # The monitor's CLOSED event says the port is really free.
        monitor = server.get_monitor_socket(zmq.EVENT_CLOSED)
        server.unbind(where)
        if monitor.poll(WAIT_MS):
            recv_monitor_message(monitor)
        server.disable_monitor()
        monitor.close()
    return body


def connect_before_bind(ctx: lesson.Ctx) -> bool:
    where = unused_endpoint()
    with ctx.socket(zmq.DEALER) as client:
        lesson.connect(client, where)  # nobody listens yet: fine
        client.send(b"sent before the bind")  # queued inside the client
        return serve_one(ctx, where) == b"sent before the bind"


def survive_restart(ctx: lesson.Ctx) -> list[bytes]:
    """One client, two server lifetimes on the same port, no reconnect code in the client.

    The client waits until it has noticed the first server is gone before it sends again:
    a message handed to a connection in the instant it dies is lost with it (that is what
    the retries in req_rep.py are for), but one queued while disconnected is kept.
    """
    where = unused_endpoint()
    replies = []
    with ctx.socket(zmq.DEALER) as client:
        monitor = client.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        lesson.connect(client, where)
        for attempt in (b"to the first server", b"to the second server"):
            client.send(attempt)
            serve_one(ctx, where)  # a new server socket each time, as after a restart
            if client.poll(WAIT_MS):
                replies.append(client.recv())
            if monitor.poll(WAIT_MS):  # the server closed: the client saw the connection drop
                recv_monitor_message(monitor)
        client.disable_monitor()
        monitor.close()
    return replies


def send_with_nobody_listening(ctx: lesson.Ctx, immediate: bool) -> str:
    with ctx.socket(zmq.DEALER) as client:
        client.immediate = immediate
        lesson.connect(client, unused_endpoint())
        try:
            client.send(b"anyone?", zmq.NOBLOCK)
        except zmq.Again:
            return "EAGAIN (not queued)"
    return "accepted (queued for later)"


@dataclass
class BindConnectDemo:
    connect_first_delivered: bool
    replies_across_restart: list[bytes]
    plain_send: str
    immediate_send: str


def demo() -> BindConnectDemo:
    with zmq.Context() as ctx:
        ctx.linger = 0
        return BindConnectDemo(
            connect_before_bind(ctx),
            survive_restart(ctx),
            send_with_nobody_listening(ctx, immediate=False),
            send_with_nobody_listening(ctx, immediate=True),
        )


def cmd_demo(_: argparse.Namespace) -> int:
    r = demo()
    print(f"connect first, bind later: message delivered = {r.connect_first_delivered}")
    print(f"server replaced on the same port: replies = {r.replies_across_restart}")
    print(f"send with nobody listening: {r.plain_send}; with IMMEDIATE=1: {r.immediate_send}")
    ok = (
        r.connect_first_delivered
        and r.replies_across_restart == [b"ack to the first server", b"ack to the second server"]
        and r.plain_send.startswith("accepted")
        and r.immediate_send.startswith("EAGAIN")
    )
    return lesson.verdict(
        "bind_connect", ok, "connect-before-bind, automatic reconnect and IMMEDIATE shown"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    lesson.add_role(roles, "demo", cmd_demo, "run each case and check it")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
