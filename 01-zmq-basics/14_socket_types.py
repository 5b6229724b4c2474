"""Lesson 14, an appendix: every valid pairing of ZMTP socket types tried live, and invalid ones.

zguide: chapter 2, "Messaging Patterns" (the table of valid combinations); the RFCs 23/ZMTP,
28/REQREP, 29/PUBSUB, 30/PIPELINE.
Terms: pairing, ZMTP handshake, socket-type check.

What it shows
  * ZeroMQ's socket types come in compatible pairs (ZMTP, RFC 23/28/29/30): PAIR-PAIR;
    REQ with REP or ROUTER; DEALER with REP, DEALER or ROUTER; ROUTER-ROUTER; PUB or XPUB
    with SUB or XSUB; PUSH-PULL. That is every valid pairing of the stable types that speak
    ZMTP. STREAM is not in the table: it speaks no ZMTP at all, and talks raw TCP to a
    program that is not ZeroMQ (a web client, a telnet). The thread-safe draft types
    (CLIENT-SERVER, RADIO-DISH, SCATTER-GATHER, PEER, CHANNEL) need a libzmq built with its
    draft API, which pyzmq's wheels are not.
  * Each type adds its own envelope: ROUTER needs the peer's identity in front, REP expects an
    empty delimiter that REQ adds by itself but a DEALER must add by hand.
  * An invalid pairing connects at TCP level but fails the ZMTP handshake, which checks the
    peer's socket type. Nothing is delivered and no error reaches your code: only a socket
    monitor shows the connection dropping before the handshake ever succeeds.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  b SUB -> a PUB: one way (a valid pair)
  b REP -> a DEALER: both ways, the DEALER writes the delimiter
  b PULL -> a REQ: refused in the handshake (an invalid pair)

Try it
  python 14_socket_types.py demo    (a line per pairing: delivered one way or both, or dropped)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `INVALID = [(zmq.REQ, zmq.PULL),` -> `INVALID = [(zmq.PAIR, zmq.DEALER), (zmq.REQ, zmq.PULL),`:
    PASS, "5 invalid refused"
      PAIR talks only to PAIR: the handshake refuses a DEALER like any other stranger.
  * `    (zmq.PUSH, zmq.PULL),` -> ``, `(zmq.DEALER, zmq.SUB)]` ->
    `(zmq.DEALER, zmq.SUB), (zmq.PUSH, zmq.PULL)]`: FAIL, "PUSH-PULL, listed invalid, handshook"
      A valid pairing moved to INVALID completes its handshake, and the demo names it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]

VALID = [
    (zmq.PAIR, zmq.PAIR),
    (zmq.REQ, zmq.REP),
    (zmq.REQ, zmq.ROUTER),
    (zmq.DEALER, zmq.REP),
    (zmq.DEALER, zmq.ROUTER),
    (zmq.DEALER, zmq.DEALER),
    (zmq.ROUTER, zmq.ROUTER),
    (zmq.PUB, zmq.SUB),
    (zmq.PUB, zmq.XSUB),
    (zmq.XPUB, zmq.SUB),
    (zmq.XPUB, zmq.XSUB),
    (zmq.PUSH, zmq.PULL),
]
INVALID = [(zmq.REQ, zmq.PULL), (zmq.PUB, zmq.PULL), (zmq.PUSH, zmq.REP), (zmq.DEALER, zmq.SUB)]
ONE_WAY = {zmq.PUB, zmq.XPUB, zmq.PUSH}
RECEIVER_ID = b"receiver"
WAIT_MS = 2000


def name(kind: int) -> str:
    return zmq.SocketType(kind).name


def envelope(sender: int, receiver: int) -> list[bytes]:
    """The frames a sender must put before the body for this receiver to accept it."""
    frames = [RECEIVER_ID] if sender == zmq.ROUTER else []
    if sender in (zmq.DEALER, zmq.ROUTER) and receiver == zmq.REP:
        frames.append(b"")
    return frames


def subscribe(receiver: Socket, kind: int) -> None:
    if kind == zmq.SUB:
        receiver.subscribe(b"")
    elif kind == zmq.XSUB:
        receiver.send(b"\x01")  # XSUB subscribes by sending the subscription as a message


def send_until_heard(a: Socket, b: Socket, frames: list[bytes]) -> bool:
    """PUB has no delivery guarantee while a subscription travels: resend until one arrives."""
    for _ in range(WAIT_MS // 50):
        a.send_multipart(frames)
        if b.poll(50):
            return True
    return False


def try_pair(ctx: Context, a_type: int, b_type: int) -> str:
    """a binds, b connects; a sends "hello" and b answers where the pattern has a way back."""
    with ctx.socket(a_type) as a, ctx.socket(b_type) as b:
        b.routing_id = RECEIVER_ID
        if a_type == zmq.ROUTER:
            a.router_mandatory = True  # report rather than silently drop an unknown peer
        subscribe(b, b_type)
        handshakes = a.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        a.bind("tcp://127.0.0.1:*")
        b.connect(a.getsockopt_string(zmq.LAST_ENDPOINT))
        if handshakes.poll(WAIT_MS):  # lesson 02: wait for the peer, never sleep
            recv_monitor_message(handshakes)
        a.disable_monitor()
        handshakes.close()
        if a_type == zmq.XPUB and a.poll(WAIT_MS):
            a.recv()  # the subscription: from here on nothing is lost
        hello = [*envelope(a_type, b_type), b"hello"]
        if not send_until_heard(a, b, hello):
            return "nothing delivered"
        got = b.recv_multipart()
        if got[-1] != b"hello":
            return f"unexpected frames {got}"
        if a_type in ONE_WAY:
            return "delivered one way"
        reply = [*got[:-1], b"reply"] if b_type == zmq.ROUTER else [b"reply"]
        b.send_multipart(reply)
        if a.poll(WAIT_MS) and a.recv_multipart()[-1] == b"reply":
            return "delivered both ways"
        return "no reply"


def try_invalid(ctx: Context, a_type: int, b_type: int) -> str:
    with ctx.socket(a_type) as a, ctx.socket(b_type) as b:
        # libzmq 4.3 reports a peer of the wrong type as a plain disconnect during the handshake.
        monitor = a.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        b.bind("tcp://127.0.0.1:*")
        a.connect(b.getsockopt_string(zmq.LAST_ENDPOINT))
        a.send(b"hello", zmq.NOBLOCK)
        event = "no handshake event"
        if monitor.poll(WAIT_MS):
            event = str(zmq.Event(recv_monitor_message(monitor)["event"]).name)
        delivered = bool(b.poll(200))
        a.disable_monitor()
        monitor.close()
    return f"{event}, {'delivered' if delivered else 'nothing delivered'}"


@dataclass
class SocketTypesDemo:
    valid: dict[str, str]
    invalid: dict[str, str]


def observe() -> SocketTypesDemo:
    with zmq.Context() as ctx:
        ctx.linger = 0
        return SocketTypesDemo(
            valid={f"{name(a)}-{name(b)}": try_pair(ctx, a, b) for a, b in VALID},
            invalid={f"{name(a)}-{name(b)}": try_invalid(ctx, a, b) for a, b in INVALID},
        )


def demo() -> int:
    r = observe()
    for pairing, outcome in r.valid.items():
        print(f"  {pairing:14} {outcome}")
    for pairing, outcome in r.invalid.items():
        print(f"  {pairing:14} {outcome}  (invalid pairing)")
    problems = [
        *(f"{p}, listed valid: {o}" for p, o in r.valid.items() if not o.startswith("delivered")),
        *(
            f"{p}, listed invalid, handshook: {o}"
            for p, o in r.invalid.items()
            if o != "DISCONNECTED, nothing delivered"
        ),
    ]
    if problems:
        print("FAIL 14_socket_types: " + "; ".join(problems))
        return 1
    print(
        f"PASS 14_socket_types: {len(r.valid)} valid pairings delivered, "
        f"{len(r.invalid)} invalid refused"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo", help="try every pairing live")
    parser.parse_args()
    try:
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
