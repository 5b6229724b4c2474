"""Lesson 23, Espresso: a tap on a proxy, to see every message that crosses it without touching
either side.

zguide: chapter 5, "Pub-Sub Tracing (Espresso Pattern)"; zmq_proxy(3), its capture socket.
Terms: capture socket, tap, tracing, XSUB, XPUB.

What it shows
  * zmq.proxy(frontend, backend, capture) (lesson 09) sends a copy of every message it moves,
    both ways, to the capture socket. Publishers and subscribers cannot tell it is there.
  * Through an XSUB-XPUB forwarder that means the tap sees the data going down and the
    subscriptions going up (b"\\x01" + prefix, lesson 05), so it shows who asked for what.
    It never sees a message nobody subscribed to: since libzmq 3 the filtering is done by
    the publisher itself, once the subscriptions have reached it, so such a message never
    leaves the publisher at all.
  * The capture socket is a plain sender (PUB here): whoever listens to it gets the copies,
    and nobody listening costs nothing. A tap is how a cluster is traced without a change to
    the programs in it.
  * Each frame of a multipart message is copied as its own message with the proxy's
    SNDMORE flag kept, so a listener reads whole messages with recv_multipart.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  publisher XPUB -> proxy.front XSUB: data down, subscriptions up
  subscriber SUB -> proxy.back XPUB: what matched its prefix
  listener SUB -> proxy.tap PUB: a copy of everything, both ways

Try it
  python 23_espresso.py demo     (a publisher, a subscriber to "node.", and a tap)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `TOPIC = b"node."` -> `TOPIC = b"job."`: PASS, "the tap saw the subscription b'\\x01job.'"
      The tap sees what each subscriber asks for, whatever it is.
  * `zmq.proxy(xsub, xpub, tap)` -> `zmq.proxy(xsub, xpub)`: FAIL, "the tap saw 0 messages"
      No capture socket, no copies: the proxy works exactly the same, and nobody can see it.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading

import zmq

TOPIC = b"node."  # what the subscriber asks for
SENT = [b"node.1 up", b"job.7 done", b"node.2 up", b"node.1 busy"]
WAIT_MS = 3000


def forwarder(ctx: zmq.Context[zmq.Socket[bytes]], front: str, back: str, tap_at: str) -> None:
    """XSUB (publishers connect) to XPUB (subscribers connect), with a tap, until ctx ends."""
    xsub, xpub, tap = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB), ctx.socket(zmq.PUB)
    for sock, where in ((xsub, front), (xpub, back), (tap, tap_at)):
        sock.linger = 0
        sock.bind(where)
    try:
        zmq.proxy(xsub, xpub, tap)
    except zmq.ContextTerminated:
        for sock in (xsub, xpub, tap):
            sock.close()


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    ctx = zmq.Context()
    front, back, tap_at = free_endpoint(), free_endpoint(), free_endpoint()
    proxy = threading.Thread(target=forwarder, args=(ctx, front, back, tap_at))
    proxy.start()  # its three sockets are made and used in that thread alone
    listener, publisher, subscriber = (
        ctx.socket(zmq.SUB), ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB)
    )  # fmt: skip
    for sock in (listener, publisher, subscriber):
        sock.linger = 0
    listener.connect(tap_at)
    listener.subscribe(b"")
    publisher.connect(front)  # an XPUB publisher: it hears when the subscription has arrived
    subscriber.connect(back)
    subscriber.subscribe(TOPIC)
    try:
        if not publisher.poll(WAIT_MS):
            raise TimeoutError(f"the subscription did not cross the proxy in {WAIT_MS} ms")
        publisher.recv()
        for message in SENT:
            publisher.send(message)
        got = [subscriber.recv() for _ in SENT if subscriber.poll(500)]
        seen = []
        while listener.poll(500):  # the tap: subscription up, messages down
            seen.append(listener.recv())
    except TimeoutError as exc:
        print(f"FAIL 23_espresso: {exc}")
        return 1
    finally:
        for sock in (listener, publisher, subscriber):
            sock.close()
        ctx.term()  # ends the proxy
        proxy.join()
    print(f"the subscriber got {got}")
    for message in seen:
        print(f"  tap: {message!r}")
    wanted = [m for m in SENT if m.startswith(TOPIC)]
    subscription = b"\x01" + TOPIC
    problems = [
        *([f"the subscriber got {got}, not {wanted}"] if got != wanted else []),
        *([f"the tap saw {len(seen)} messages"] if not seen else []),
        *(
            [f"the tap missed the subscription {subscription!r}"]
            if seen and subscription not in seen
            else []
        ),
        *(f"the tap missed {m!r}" for m in wanted if seen and m not in seen),
        *(
            f"the tap saw {m!r}, which nobody asked for"
            for m in SENT
            if m not in wanted and m in seen
        ),
    ]
    if problems:
        print("FAIL 23_espresso: " + "; ".join(problems))
        return 1
    print(
        f"PASS 23_espresso: the tap saw the subscription {subscription!r} go up and the "
        f"{len(wanted)} messages that matched it come down; the {len(SENT) - len(wanted)} "
        "nobody asked for never left the publisher"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo")
    parser.parse_args()
    try:
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
