"""Framing: multipart messages, envelopes, and what ROUTER and REQ add to them.

What it shows
  * A ZeroMQ message is a list of frames, sent with SNDMORE on every frame but the last and
    delivered atomically: the receiver gets all of them or none, never half a message.
  * ROUTER prepends the sender's identity to what it receives and strips it from what it sends.
  * REQ adds an empty delimiter frame in front of the body; REP strips everything up to it and
    puts it back on the reply. DEALER adds nothing: with a DEALER you write the envelope.

What you will see (demo)
  Each message printed frame by frame as the receiving socket delivers it.

Try it
  Change the DEALER's routing_id in `dealer_to_router`, or delete it, and run the demo again.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from zmq_basics import lesson

WAIT_MS = 2000
Pair = tuple[lesson.Sock, lesson.Sock]


def pair(ctx: lesson.Ctx, sender_type: int, receiver_type: int) -> Pair:
    receiver = ctx.socket(receiver_type)
    sender = ctx.socket(sender_type)
    lesson.connect(sender, lesson.bind(receiver, lesson.ANY_LOCAL_PORT))
    return sender, receiver


def receive(sock: lesson.Sock) -> list[bytes]:
    """Read one message frame by frame, as recv_multipart() does for us."""
    if not sock.poll(WAIT_MS):
        raise lesson.LessonError(f"nothing arrived within {WAIT_MS} ms")
    frames = [sock.recv()]
    while sock.rcvmore:  # set while more frames of the same message follow
        frames.append(sock.recv())
    return frames


def atomic_delivery(ctx: lesson.Ctx) -> tuple[bool, list[bytes]]:
    """Send two frames of three; show that nothing is readable until the last one is sent."""
    sender, receiver = pair(ctx, zmq.PUSH, zmq.PULL)
    sender.send(b"part 1", zmq.SNDMORE)
    sender.send(b"part 2", zmq.SNDMORE)
    early = bool(receiver.poll(300))  # a generous wait: the frames sit in the sender
    sender.send(b"part 3")
    return early, receive(receiver)


def req_to_router(ctx: lesson.Ctx) -> tuple[list[bytes], list[bytes]]:
    req, router = pair(ctx, zmq.REQ, zmq.ROUTER)
    req.send(b"hello")
    seen_by_router = receive(router)
    identity, delimiter, _ = seen_by_router
    router.send_multipart([identity, delimiter, b"world"])  # the envelope routes the reply back
    return seen_by_router, receive(req)


def dealer_to_router(ctx: lesson.Ctx) -> list[bytes]:
    dealer = ctx.socket(zmq.DEALER)
    dealer.routing_id = b"alice"
    router = ctx.socket(zmq.ROUTER)
    lesson.connect(dealer, lesson.bind(router, lesson.ANY_LOCAL_PORT))
    dealer.send_multipart([b"no", b"delimiter"])
    return receive(router)


def req_to_rep(ctx: lesson.Ctx) -> list[bytes]:
    req, rep = pair(ctx, zmq.REQ, zmq.REP)
    req.send(b"hello")
    return receive(rep)


@dataclass
class FramingDemo:
    arrived_early: bool
    multipart: list[bytes]
    req_router: list[bytes]
    req_reply: list[bytes]
    dealer_router: list[bytes]
    req_rep: list[bytes]


def demo() -> FramingDemo:
    with zmq.Context() as ctx:
        ctx.linger = 0
        early, multipart = atomic_delivery(ctx)
        seen_by_router, reply = req_to_router(ctx)
        return FramingDemo(
            early, multipart, seen_by_router, reply, dealer_to_router(ctx), req_to_rep(ctx)
        )


def show(title: str, frames: list[bytes]) -> None:
    print(title)
    for number, frame in enumerate(frames):
        print(f"  frame {number}: {len(frame):2} bytes  {frame!r}")


def cmd_demo(_: argparse.Namespace) -> int:
    r = demo()
    print(f"after 2 of 3 frames, could the receiver read anything? {r.arrived_early}")
    show("PUSH -> PULL, three frames:", r.multipart)
    show("REQ -> ROUTER (identity from ROUTER, empty delimiter from REQ):", r.req_router)
    show("ROUTER -> REQ reply (REQ removed the envelope):", r.req_reply)
    show("DEALER 'alice' -> ROUTER (no delimiter):", r.dealer_router)
    show("REQ -> REP (REP hides the envelope):", r.req_rep)
    ok = (
        not r.arrived_early
        and r.multipart == [b"part 1", b"part 2", b"part 3"]
        and len(r.req_router) == 3
        and r.req_router[1:] == [b"", b"hello"]
        and r.req_reply == [b"world"]
        and r.dealer_router == [b"alice", b"no", b"delimiter"]
        and r.req_rep == [b"hello"]
    )
    return lesson.verdict(
        "framing", ok, "atomic multipart, ROUTER identity and REQ delimiter as described"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    lesson.add_role(roles, "demo", cmd_demo, "send each kind of message and print its frames")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
