"""Lesson 06, framing: multipart messages, envelopes, and what ROUTER and REQ add to them.

zguide: chapter 2, "Multipart Messages"; chapter 3, "The Simple Reply Envelope" and "The
Extended Reply Envelope".
Terms: frame, multipart, SNDMORE, RCVMORE, envelope, routing id (identity), empty delimiter,
ROUTER_HANDOVER.

What it shows
  * A ZeroMQ message is a list of frames, sent with SNDMORE on every frame but the last and
    delivered atomically: the receiver gets all of them or none, never half a message.
  * ROUTER prepends the sender's identity to what it receives and strips it from what it sends.
  * REQ adds an empty delimiter frame in front of the body; REP strips everything up to it and
    puts it back on the reply. DEALER adds nothing: with a DEALER you write the envelope.
  * A routing id belongs to one connection at a time. A second peer that comes with an id
    already connected (a worker restarted before its old connection timed out) is refused
    by the ROUTER, unless ROUTER_HANDOVER is set: then the newcomer takes the id over, and
    the old connection is dropped. Step 02's coordinator leaves it off on purpose: with it,
    anyone who connects calling itself worker1 would take a live worker's place. It lets its
    ZMTP heartbeats (lesson 17) drop the dead connection, and then the id is free again.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  receiver PULL -> sender PUSH: part 1, part 2, part 3 (all or nothing)
  client REQ -> server ROUTER: [client id, "", body] as the ROUTER reads it
  dealer DEALER -> router ROUTER: ["alice", body...]: no delimiter

Try it
  python 06_framing.py demo          (each message printed frame by frame as it arrives)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `DEALER_ID: bytes | None = b"alice"` -> `DEALER_ID: bytes | None = b"bob"`: PASS,
    "DEALER b'bob' -> ROUTER"
      The identity the ROUTER puts in front is the one the DEALER chose.
  * `DEALER_ID: bytes | None = b"alice"` -> `DEALER_ID: bytes | None = None`: PASS,
    "an identity the ROUTER made up"
      With none chosen, the ROUTER makes one up: 5 bytes, the first a zero byte.
  * `sender.send(b"part 3")` -> `pass`: FAIL, "nothing arrived within 2000 ms"
      Two frames of three are never delivered: a message is all of its frames or nothing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import zmq

WAIT_MS = 2000
DEALER_ID: bytes | None = b"alice"  # None: the DEALER chooses none, and ROUTER makes one up
Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


def pair(ctx: Context, sender_type: int, receiver_type: int) -> tuple[Socket, Socket]:
    receiver = ctx.socket(receiver_type)
    receiver.bind("tcp://127.0.0.1:*")
    sender = ctx.socket(sender_type)
    sender.connect(receiver.getsockopt_string(zmq.LAST_ENDPOINT))
    return sender, receiver


def receive(sock: Socket) -> list[bytes]:
    """Read one message frame by frame, as recv_multipart() does for us."""
    if not sock.poll(WAIT_MS):
        raise TimeoutError(f"nothing arrived within {WAIT_MS} ms")
    frames = [sock.recv()]
    while sock.rcvmore:  # set while more frames of the same message follow
        frames.append(sock.recv())
    return frames


def atomic_delivery(ctx: Context) -> tuple[bool, list[bytes]]:
    """Send two frames of three; show that nothing is readable until the last one is sent."""
    sender, receiver = pair(ctx, zmq.PUSH, zmq.PULL)
    sender.send(b"part 1", zmq.SNDMORE)
    sender.send(b"part 2", zmq.SNDMORE)
    early = bool(receiver.poll(300))  # a generous wait: the frames sit in the sender
    sender.send(b"part 3")
    return early, receive(receiver)


def req_to_router(ctx: Context) -> tuple[list[bytes], list[bytes]]:
    req, router = pair(ctx, zmq.REQ, zmq.ROUTER)
    req.send(b"hello")
    seen_by_router = receive(router)
    identity, delimiter, _ = seen_by_router
    router.send_multipart([identity, delimiter, b"world"])  # the envelope routes the reply back
    return seen_by_router, receive(req)


def dealer_to_router(ctx: Context) -> list[bytes]:
    dealer = ctx.socket(zmq.DEALER)
    if DEALER_ID is not None:
        dealer.routing_id = DEALER_ID
    router = ctx.socket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:*")
    dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
    dealer.send_multipart([b"no", b"delimiter"])
    return receive(router)


def req_to_rep(ctx: Context) -> list[bytes]:
    req, rep = pair(ctx, zmq.REQ, zmq.REP)
    req.send(b"hello")
    return receive(rep)


def same_id_twice(ctx: Context, handover: bool) -> tuple[list[bytes], str]:
    """Two DEALERs with one routing id, the second connecting while the first is connected:
    (the bodies the ROUTER received, which DEALER a message to that id reached)."""
    router = ctx.socket(zmq.ROUTER)
    router.router_handover = handover
    router.bind("tcp://127.0.0.1:*")
    first, second = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    received = []
    for name, dealer in ((b"first", first), (b"second", second)):
        dealer.routing_id = b"worker-7"  # the same for both: a worker restarted, say
        dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
        dealer.send(b"from the " + name)
        if router.poll(500):  # the second's may never come: a short wait is the test
            received.append(router.recv_multipart()[1])
    router.send_multipart([b"worker-7", b"for worker-7"])
    reached = "first" if first.poll(500) else "second" if second.poll(500) else "nobody"
    return received, reached


@dataclass
class FramingDemo:
    arrived_early: bool
    multipart: list[bytes]
    req_router: list[bytes]
    req_reply: list[bytes]
    dealer_router: list[bytes]
    req_rep: list[bytes]
    kept: tuple[list[bytes], str]  # same routing id twice, ROUTER_HANDOVER off
    handed_over: tuple[list[bytes], str]  # and on


def observe() -> FramingDemo:
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        early, multipart = atomic_delivery(ctx)
        seen_by_router, reply = req_to_router(ctx)
        return FramingDemo(
            early,
            multipart,
            seen_by_router,
            reply,
            dealer_to_router(ctx),
            req_to_rep(ctx),
            same_id_twice(ctx, handover=False),
            same_id_twice(ctx, handover=True),
        )
    finally:
        ctx.destroy()  # closes every socket, also those of a step that timed out


def show(title: str, frames: list[bytes]) -> None:
    print(title)
    for number, frame in enumerate(frames):
        print(f"  frame {number}: {len(frame):2} bytes  {frame!r}")


def demo() -> int:
    try:
        r = observe()
    except TimeoutError as exc:
        print(f"FAIL 06_framing: {exc}")
        return 1
    named = f"DEALER {DEALER_ID!r}" if DEALER_ID is not None else "a DEALER that chose no identity"
    print(f"after 2 of 3 frames, could the receiver read anything? {r.arrived_early}")
    show("PUSH -> PULL, three frames:", r.multipart)
    show("REQ -> ROUTER (identity from ROUTER, empty delimiter from REQ):", r.req_router)
    show("ROUTER -> REQ reply (REQ removed the envelope):", r.req_reply)
    show(f"{named} -> ROUTER (no delimiter):", r.dealer_router)
    show("REQ -> REP (REP hides the envelope):", r.req_rep)
    for label, (received, reached) in (("off", r.kept), ("on", r.handed_over)):
        print(f"two DEALERs as b'worker-7', ROUTER_HANDOVER {label}: the ROUTER got "
              f"{received}; a message to b'worker-7' reached the {reached}")  # fmt: skip
    identity, *body = r.dealer_router
    if DEALER_ID is None:  # libzmq's own: a zero byte, then a 32-bit number
        identity_ok = len(identity) == 5 and identity[0] == 0
        print(f"{named}: the ROUTER saw {identity!r}, an identity the ROUTER made up")
    else:
        identity_ok = identity == DEALER_ID
    ok = (
        not r.arrived_early
        and r.multipart == [b"part 1", b"part 2", b"part 3"]
        and len(r.req_router) == 3
        and r.req_router[1:] == [b"", b"hello"]
        and r.req_reply == [b"world"]
        and identity_ok
        and body == [b"no", b"delimiter"]
        and r.req_rep == [b"hello"]
        and r.kept == ([b"from the first"], "first")  # the newcomer with a taken id: refused
        and r.handed_over == ([b"from the first", b"from the second"], "second")
    )
    print(
        f"{'PASS' if ok else 'FAIL'} 06_framing: "
        "atomic multipart, ROUTER identity and REQ delimiter as described"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo", help="send each kind of message and print its frames")
    parser.parse_args()
    try:
        return demo()
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
