"""Lesson 08, high-water marks: what each socket type does when its peer stops reading, measured.

zguide: chapter 2, "High-Water Marks"; chapter 5, "Slow Subscriber Detection".
Terms: HWM (high-water mark: how many messages a queue may hold), SNDHWM, RCVHWM,
backpressure, EAGAIN, ROUTER_MANDATORY, EHOSTUNREACH, XPUB_NODROP.

What it shows
  * Over inproc the two sockets share one pipe, which holds SNDHWM + RCVHWM messages. Over
    TCP each side has its own pipe, SNDHWM on the sender's and RCVHWM on the receiver's,
    with the kernel's socket buffers between them, and the I/O thread moves messages from
    the sender's pipe into the kernel at its own pace.
  * When the sender's pipe is full, PUSH and DEALER block: with NOBLOCK the send raises
    EAGAIN, which is backpressure you can act on. A tight send loop outruns the I/O thread,
    so over TCP it is refused at SNDHWM alone (try it): EAGAIN is a snapshot of the pipe
    at that instant, not the capacity of the connection, which a slower sender would find
    larger (the kernel and the receiver's pipe fill too).
  * PUB never blocks: it drops messages for the slow subscriber, silently. The demo measures
    it with an XPUB (a PUB that also reads subscriptions, so it can wait for the subscriber
    first, lesson 05), which drops the same way, unless XPUB_NODROP is set: then a full pipe
    gives EAGAIN like PUSH.
  * ROUTER drops too, unless ROUTER_MANDATORY is set: then a full pipe gives EAGAIN and an
    unknown identity gives EHOSTUNREACH, so nothing vanishes without an error.
  * SNDHWM = 0 means no limit at all: nothing is ever refused or dropped, memory is.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  receiver PULL -> sender PUSH: a flood, refused (EAGAIN) at SNDHWM + RCVHWM
  receiver SUB -> sender XPUB: a flood, the rest dropped at the HWM

Try it
  python 08_high_water_marks.py demo        (how many went in before the limit, then what)
  python 08_high_water_marks.py demo --transport tcp

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `HWM = 100` -> `HWM = 1000`: PASS, "SNDHWM = RCVHWM = 1000"
      Ten times the queue: each refusing socket takes ten times as many before EAGAIN.
  * `HWM = 100` -> `HWM = 0`: FAIL, "SNDHWM=0 means unlimited"
      No limit: the whole flood goes in, nothing is refused and nothing dropped, so there is
      no high-water mark left to show.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq

HWM = 100
FLOOD = 50 * (HWM or 100)  # far more than any limited queue here can hold
PAYLOAD = b"m" * 64
Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


def linked(
    ctx: Context, sender_type: int, receiver_type: int, transport: str
) -> tuple[Socket, Socket]:
    """A sender and a receiver with HWM on both ends; the receiver never reads until drained."""
    sender, receiver = ctx.socket(sender_type), ctx.socket(receiver_type)
    sender.sndhwm = receiver.rcvhwm = HWM
    where = "tcp://127.0.0.1:*" if transport == "tcp" else f"inproc://hwm-{next(_names)}"
    sender.bind(where)
    receiver.connect(sender.getsockopt_string(zmq.LAST_ENDPOINT))
    return sender, receiver


_names = itertools.count()


def drain(sock: Socket) -> int:
    count = 0
    while sock.poll(200):
        sock.recv_multipart()
        count += 1
    return count


def send_until_blocked(sock: Socket, frames: list[bytes]) -> tuple[int, str]:
    """Send without blocking until the socket refuses; return how many went in, and why not more."""
    for sent in range(FLOOD):
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            return sent, "EAGAIN" if exc.errno == zmq.EAGAIN else str(exc.strerror)
    return FLOOD, "never refused"


def blocking_type(
    ctx: Context, sender_type: int, receiver_type: int, transport: str
) -> tuple[int, str]:
    sender, _ = linked(ctx, sender_type, receiver_type, transport)
    if not sender.poll(2000, zmq.POLLOUT):
        raise TimeoutError("the connection did not come up within 2s")
    return send_until_blocked(sender, [PAYLOAD])


def pub_flood(ctx: Context, transport: str, nodrop: bool = False) -> tuple[int, int, str]:
    pub, sub = linked(ctx, zmq.XPUB, zmq.SUB, transport)
    pub.xpub_nodrop = nodrop  # refuse (EAGAIN) instead of dropping for a full subscriber
    sub.subscribe(b"")
    if not pub.poll(2000):
        raise TimeoutError("the subscription did not arrive within 2s")
    pub.recv()
    accepted, stop = send_until_blocked(pub, [PAYLOAD])
    return accepted, drain(sub), stop


def router_flood(ctx: Context, transport: str, mandatory: bool) -> tuple[int, int, str]:
    router, dealer = linked(ctx, zmq.ROUTER, zmq.DEALER, transport)
    router.router_mandatory = mandatory
    dealer.send(b"hello")  # the ROUTER learns the dealer's identity from its first message
    if not router.poll(2000):
        raise TimeoutError("the dealer's hello did not arrive within 2s")
    identity, _ = router.recv_multipart()
    accepted, stop = send_until_blocked(router, [identity, PAYLOAD])
    return accepted, drain(dealer), stop


def router_unknown_peer(ctx: Context) -> str:
    with ctx.socket(zmq.ROUTER) as router:
        router.router_mandatory = True
        _, stop = send_until_blocked(router, [b"nobody", PAYLOAD])
    return stop


@dataclass
class HwmDemo:
    push: tuple[int, str]
    dealer: tuple[int, str]
    pub: tuple[int, int, str]
    pub_nodrop: tuple[int, int, str]
    router: tuple[int, int, str]
    router_mandatory: tuple[int, int, str]
    router_unknown: str


def observe(transport: str = "inproc") -> HwmDemo:
    with zmq.Context() as ctx:
        ctx.linger = 0
        return HwmDemo(
            push=blocking_type(ctx, zmq.PUSH, zmq.PULL, transport),
            dealer=blocking_type(ctx, zmq.DEALER, zmq.DEALER, transport),
            pub=pub_flood(ctx, transport),
            pub_nodrop=pub_flood(ctx, transport, nodrop=True),
            router=router_flood(ctx, transport, mandatory=False),
            router_mandatory=router_flood(ctx, transport, mandatory=True),
            router_unknown=router_unknown_peer(ctx),
        )


def expectations(r: HwmDemo) -> list[str]:
    """What the lesson claims, checked against what happened: each claim broken, said."""
    if HWM == 0:
        refused = [
            n
            for n, (_, stop) in (("PUSH", r.push), ("DEALER", r.dealer))
            if stop != "never refused"
        ]
        return [
            "SNDHWM=0 means unlimited: the whole flood went in, nothing refused"
            + (f" (yet {', '.join(refused)} refused)" if refused else "")
            + f", nothing dropped ({r.pub[1]} of {r.pub[0]} delivered by PUB)"
        ]
    problems = []
    for kind, (accepted, stop) in (
        ("PUSH", r.push), ("DEALER", r.dealer), ("ROUTER_MANDATORY", r.router_mandatory[::2]),
        ("XPUB_NODROP", r.pub_nodrop[::2]),
    ):  # fmt: skip
        if stop != "EAGAIN" or accepted < HWM:
            problems.append(f"{kind} took {accepted}, then {stop}: not refused at its HWM")
    for kind, (accepted, delivered, stop) in (("PUB", r.pub), ("ROUTER", r.router)):
        if stop != "never refused" or delivered >= accepted:
            problems.append(f"{kind} took {accepted} and delivered {delivered}: nothing dropped")
    if r.router_unknown != zmq.strerror(zmq.EHOSTUNREACH):
        problems.append(f"ROUTER_MANDATORY to an unknown peer: {r.router_unknown}")
    return problems


def demo(transport: str, json_path: Path | None) -> int:
    r = observe(transport)
    print(f"SNDHWM = RCVHWM = {HWM}, {transport}, flood of {FLOOD}")
    print(f"  PUSH:    {r.push[0]:5} accepted, then {r.push[1]}")
    print(f"  DEALER:  {r.dealer[0]:5} accepted, then {r.dealer[1]}")
    print(f"  PUB:     {r.pub[0]:5} accepted ({r.pub[2]}), {r.pub[1]} delivered (an XPUB)")
    print(f"  XPUB_NODROP: {r.pub_nodrop[0]} accepted, then {r.pub_nodrop[2]}")
    print(f"  ROUTER:  {r.router[0]:5} accepted ({r.router[2]}), {r.router[1]} delivered")
    print(f"  ROUTER_MANDATORY: {r.router_mandatory[0]} accepted, then {r.router_mandatory[2]}")
    print(f"  ROUTER_MANDATORY to an unknown identity: {r.router_unknown}")
    problems = expectations(r)
    figures = {
        "transport": transport,
        "hwm": HWM,
        "flood": FLOOD,
        "accepted": {
            "PUSH": r.push[0],
            "DEALER": r.dealer[0],
            "PUB": r.pub[0],
            "XPUB_NODROP": r.pub_nodrop[0],
            "ROUTER": r.router[0],
            "ROUTER_MANDATORY": r.router_mandatory[0],
        },
        "delivered": {"PUB": r.pub[1], "ROUTER": r.router[1]},
    }
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if problems:
        print("FAIL 08_high_water_marks: " + "; ".join(problems))
        return 1
    print(
        "PASS 08_high_water_marks: "
        "PUSH, DEALER and XPUB_NODROP refuse, PUB and ROUTER drop, ROUTER_MANDATORY reports"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    demo_role = roles.add_parser("demo", help="flood each socket type and report")
    demo_role.add_argument("--transport", choices=["inproc", "tcp"], default="inproc")
    demo_role.add_argument("--json", type=Path, help="save the figures here")
    args = parser.parse_args()
    try:
        return demo(args.transport, args.json)
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
