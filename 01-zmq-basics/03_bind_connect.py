"""Lesson 03, bind and connect: who does which, ports chosen for you, and reconnecting for free.

zguide: chapter 2, "Plugging Sockets into the Topology" and "Missing Message Problem Solver".
Terms: bind, connect, ephemeral port, LAST_ENDPOINT, RECONNECT_IVL, IMMEDIATE.

What it shows
  * Bind on the side that is stable and known (a broker, a coordinator, a node agent);
    connect from the side that comes and goes (clients, workers). Either socket type can do
    either: binding is about addresses, not about who sends first.
  * Binding to port * lets the operating system pick a free port; LAST_ENDPOINT says which.
    Tests and demos use this so they never collide with a port in use.
  * Connect before bind works: the connecting socket queues messages and keeps retrying
    (lesson 02 watched it) until the other side binds.
  * When the bound side restarts, connected sockets reconnect on their own (every
    RECONNECT_IVL, 100 ms by default) and queued messages go through.
  * IMMEDIATE=1 stops that queueing: with no finished connection, a send fails with EAGAIN
    instead of piling messages up for a peer that may never come.
  * Queueing needs a pipe, and a pipe is made per connection: a connecting socket makes its
    pipe at connect() (unless IMMEDIATE=1), a binding one only when a peer connects. So a
    bound DEALER with no peer has nowhere to put a message, and send() blocks until one
    comes; every send here has SNDTIMEO, so a swapped bind and connect fails and says why.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client DEALER -> server ROUTER: "sent before the bind" (queued in the client), "ack" back

Try it
  python 03_bind_connect.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `client.connect(endpoint)  # nobody listens yet: fine` -> `client.bind(endpoint)`:
    FAIL, "a bound DEALER has no pipe until a peer connects"
      The client binds instead: its send has no pipe to queue on, and would block for ever.
  * `client.immediate = immediate` -> `client.immediate = False`: FAIL,
    "with IMMEDIATE=1: accepted (queued for later)"
      The option is what refuses: without it both sends are queued for a peer not there.
"""

from __future__ import annotations

import argparse
import socket
import sys

import zmq
from zmq.utils.monitor import recv_monitor_message

WAIT_MS = 3000


def free_endpoint() -> str:
    """Ask the OS for a free port, so we can connect to it before anyone binds it.

    A plain socket releases its port as soon as it is closed; a ZeroMQ socket does not (see
    serve_one), so it would be the wrong tool for this.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def ephemeral_port(ctx: zmq.Context[zmq.Socket[bytes]]) -> str:
    with ctx.socket(zmq.PULL) as sock:
        sock.bind("tcp://127.0.0.1:*")  # the OS picks the port
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)  # and this is the one it picked


def serve_one(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> bytes | None:
    """Bind a fresh ROUTER, answer one request, release the port; return the request or None."""
    with ctx.socket(zmq.ROUTER) as server:
        server.bind(endpoint)
        body = None
        if server.poll(WAIT_MS):
            identity, body = server.recv_multipart()
            server.send_multipart([identity, b"ack " + body])
        # unbind() returns at once while ZeroMQ's I/O thread closes the listening socket later;
        # binding the same port again right away could fail with "Address already in use".
        # The monitor's CLOSED event (lesson 02) says the port is really free.
        monitor = server.get_monitor_socket(zmq.EVENT_CLOSED)
        server.unbind(endpoint)
        if monitor.poll(WAIT_MS):
            recv_monitor_message(monitor)
        server.disable_monitor()
        monitor.close()
    return body


def connect_before_bind(ctx: zmq.Context[zmq.Socket[bytes]]) -> str:
    """ "delivered", or what went wrong."""
    endpoint = free_endpoint()
    with ctx.socket(zmq.DEALER) as client:
        client.sndtimeo = WAIT_MS  # with no pipe to queue on, send() blocks: not for ever
        client.connect(endpoint)  # nobody listens yet: fine
        try:
            client.send(b"sent before the bind")  # queued inside the client
        except zmq.Again:
            return (
                f"the send blocked for {WAIT_MS} ms: a bound DEALER has no pipe until a peer "
                "connects, so it has nowhere to queue"
            )
        received = serve_one(ctx, endpoint)
        return (
            "delivered" if received == b"sent before the bind" else f"the server got {received!r}"
        )


def survive_restart(ctx: zmq.Context[zmq.Socket[bytes]]) -> list[bytes]:
    """One client, two server lifetimes on the same port, no reconnect code in the client.

    The client waits until it has noticed the first server is gone before it sends again:
    a message handed to a connection in the instant it dies is lost with it (lesson 11's
    retries are for that), but one queued while disconnected is kept.
    """
    endpoint = free_endpoint()
    replies = []
    with ctx.socket(zmq.DEALER) as client:
        client.sndtimeo = WAIT_MS
        monitor = client.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        client.connect(endpoint)
        for attempt in (b"to the first server", b"to the second server"):
            client.send(attempt)
            serve_one(ctx, endpoint)  # a new server socket each time, as after a restart
            if client.poll(WAIT_MS):
                replies.append(client.recv())
            if monitor.poll(WAIT_MS):  # the server closed: the client saw the connection drop
                recv_monitor_message(monitor)
        client.disable_monitor()
        monitor.close()
    return replies


def send_with_nobody_listening(ctx: zmq.Context[zmq.Socket[bytes]], immediate: bool) -> str:
    with ctx.socket(zmq.DEALER) as client:
        client.immediate = immediate
        client.connect(free_endpoint())
        try:
            client.send(b"anyone?", zmq.NOBLOCK)
        except zmq.Again:
            return "EAGAIN (not queued)"
    return "accepted (queued for later)"


def demo() -> int:
    ctx = zmq.Context()
    ctx.linger = 0
    chosen = ephemeral_port(ctx)
    delivered = connect_before_bind(ctx)
    replies = survive_restart(ctx) if delivered == "delivered" else []
    plain = send_with_nobody_listening(ctx, immediate=False)
    immediate = send_with_nobody_listening(ctx, immediate=True)
    ctx.term()
    print(f"bind to tcp://127.0.0.1:* -> LAST_ENDPOINT {chosen}")
    print(f"connect first, bind later: {delivered}")
    print(f"server replaced on the same port: replies = {replies}")
    print(f"send with nobody listening: {plain}; with IMMEDIATE=1: {immediate}")
    wanted_replies = [b"ack to the first server", b"ack to the second server"]
    problems = [
        *([f"LAST_ENDPOINT gave {chosen}"] if chosen.endswith(":*") else []),
        *([delivered] if delivered != "delivered" else []),
        *([f"replies {replies}, not {wanted_replies}"] if replies != wanted_replies else []),
        *([f"without IMMEDIATE: {plain}"] if not plain.startswith("accepted") else []),
        *([f"with IMMEDIATE=1: {immediate}"] if not immediate.startswith("EAGAIN") else []),
    ]
    if problems:
        print("FAIL 03_bind_connect: " + "; ".join(problems))
        return 1
    print(
        "PASS 03_bind_connect: "
        "ephemeral port, connect-before-bind, automatic reconnect and IMMEDIATE shown"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo", help="run each case and check it")
    parser.parse_args()
    try:
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
