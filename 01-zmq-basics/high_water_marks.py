"""High water marks: what each socket type does when its peer stops reading, measured.

What it shows
  * Every pipe between two sockets holds at most SNDHWM messages on the sending side plus
    RCVHWM on the receiving side (plus, over TCP, what the kernel buffers hold).
  * When that is full, PUSH and DEALER block: with NOBLOCK the send raises EAGAIN, which is
    backpressure you can act on.
  * PUB never blocks: it drops messages for the slow subscriber, silently.
  * ROUTER drops too, unless ROUTER_MANDATORY is set: then a full pipe gives EAGAIN and an
    unknown identity gives EHOSTUNREACH, so nothing vanishes without an error.

What you will see (demo)
  For each socket type, how many messages went in before the limit, and what happened after.

Try it
  python 01-zmq-basics/high_water_marks.py demo --transport tcp
  Over TCP the kernel's socket buffers add to the queue: the numbers grow and vary.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from zmq_basics import lesson

HWM = 100
FLOOD = 50 * HWM  # far more than any queue here can hold
PAYLOAD = b"m" * 64


def linked(
    ctx: lesson.Ctx, sender_type: int, receiver_type: int, transport: str
) -> tuple[lesson.Sock, lesson.Sock]:
    """A sender and a receiver with HWM on both ends; the receiver never reads until drained."""
    sender, receiver = ctx.socket(sender_type), ctx.socket(receiver_type)
    sender.sndhwm = receiver.rcvhwm = HWM
    where = "tcp://127.0.0.1:*" if transport == "tcp" else f"inproc://hwm-{next(_names)}"
    lesson.connect(receiver, lesson.bind(sender, where))
    return sender, receiver


_names = itertools.count()


def drain(sock: lesson.Sock) -> int:
    count = 0
    while sock.poll(200):
        sock.recv_multipart()
        count += 1
    return count


def send_until_blocked(sock: lesson.Sock, frames: list[bytes]) -> tuple[int, str]:
    """Send without blocking until the socket refuses; return how many went in, and why not more."""
    for sent in range(FLOOD):
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            return sent, "EAGAIN" if exc.errno == zmq.EAGAIN else str(exc.strerror)
    return FLOOD, "never refused"


def blocking_type(
    ctx: lesson.Ctx, sender_type: int, receiver_type: int, transport: str
) -> tuple[int, str]:
    sender, _ = linked(ctx, sender_type, receiver_type, transport)
    if not sender.poll(2000, zmq.POLLOUT):
        raise lesson.LessonError("the connection did not come up within 2s")
    return send_until_blocked(sender, [PAYLOAD])


def pub_flood(ctx: lesson.Ctx, transport: str) -> tuple[int, int, str]:
    pub, sub = linked(ctx, zmq.XPUB, zmq.SUB, transport)
    sub.subscribe(b"")
    if not pub.poll(2000):
        raise lesson.LessonError("the subscription did not arrive within 2s")
    pub.recv()
    accepted, stop = send_until_blocked(pub, [PAYLOAD])
    return accepted, drain(sub), stop


def router_flood(ctx: lesson.Ctx, transport: str, mandatory: bool) -> tuple[int, int, str]:
    router, dealer = linked(ctx, zmq.ROUTER, zmq.DEALER, transport)
    router.router_mandatory = mandatory
    dealer.send(b"hello")  # the ROUTER learns the dealer's identity from its first message
    if not router.poll(2000):
        raise lesson.LessonError("the dealer's hello did not arrive within 2s")
    identity, _ = router.recv_multipart()
    accepted, stop = send_until_blocked(router, [identity, PAYLOAD])
    return accepted, drain(dealer), stop


def router_unknown_peer(ctx: lesson.Ctx) -> str:
    with ctx.socket(zmq.ROUTER) as router:
        router.router_mandatory = True
        _, stop = send_until_blocked(router, [b"nobody", PAYLOAD])
    return stop


@dataclass
class HwmDemo:
    push: tuple[int, str]
    dealer: tuple[int, str]
    pub: tuple[int, int, str]
    router: tuple[int, int, str]
    router_mandatory: tuple[int, int, str]
    router_unknown: str


def demo(transport: str = "inproc") -> HwmDemo:
    with zmq.Context() as ctx:
        ctx.linger = 0
        return HwmDemo(
            push=blocking_type(ctx, zmq.PUSH, zmq.PULL, transport),
            dealer=blocking_type(ctx, zmq.DEALER, zmq.DEALER, transport),
            pub=pub_flood(ctx, transport),
            router=router_flood(ctx, transport, mandatory=False),
            router_mandatory=router_flood(ctx, transport, mandatory=True),
            router_unknown=router_unknown_peer(ctx),
        )


def cmd_demo(args: argparse.Namespace) -> int:
    r = demo(args.transport)
    print(f"SNDHWM = RCVHWM = {HWM}, {args.transport}, flood of {FLOOD}")
    print(f"  PUSH:    {r.push[0]:5} accepted, then {r.push[1]}")
    print(f"  DEALER:  {r.dealer[0]:5} accepted, then {r.dealer[1]}")
    print(f"  PUB:     {r.pub[0]:5} accepted ({r.pub[2]}), {r.pub[1]} delivered, the rest dropped")
    print(f"  ROUTER:  {r.router[0]:5} accepted ({r.router[2]}), {r.router[1]} delivered")
    print(f"  ROUTER_MANDATORY: {r.router_mandatory[0]} accepted, then {r.router_mandatory[2]}")
    print(f"  ROUTER_MANDATORY to an unknown identity: {r.router_unknown}")
    ok = (
        r.push[1] == "EAGAIN"
        and r.push[0] >= HWM
        and r.dealer[1] == "EAGAIN"
        and r.dealer[0] >= HWM
        and r.pub[2] == "never refused"
        and r.pub[1] < r.pub[0]
        and r.router[2] == "never refused"
        and r.router[1] < r.router[0]
        and r.router_mandatory[2] == "EAGAIN"
        and r.router_unknown == zmq.strerror(zmq.EHOSTUNREACH)
    )
    figures = {
        "transport": args.transport,
        "hwm": HWM,
        "flood": FLOOD,
        "accepted": {
            "PUSH": r.push[0],
            "DEALER": r.dealer[0],
            "PUB": r.pub[0],
            "ROUTER": r.router[0],
            "ROUTER_MANDATORY": r.router_mandatory[0],
        },
        "delivered": {"PUB": r.pub[1], "ROUTER": r.router[1]},
    }
    return lesson.verdict(
        "high_water_marks", ok, "PUSH/DEALER block, PUB/ROUTER drop, MANDATORY reports", figures
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    demo_role = lesson.add_role(roles, "demo", cmd_demo, "flood each socket type and report")
    demo_role.add_argument("--transport", choices=["inproc", "tcp"], default="inproc")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
