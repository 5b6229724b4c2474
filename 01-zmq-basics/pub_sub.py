"""PUB-SUB: one-to-many broadcast with topic prefixes, the slow joiner, and drops at the HWM.

What it shows
  * A SUB receives only messages whose first frame starts with a prefix it subscribed to.
  * The slow joiner: connecting and subscribing take a moment, and whatever PUB sends before
    the subscription arrives is dropped. The fix is to know when the subscriber is there: an
    XPUB socket receives each subscription as a message (b"\\x01" + prefix), so the publisher
    can wait for it before it publishes.
  * PUB never blocks: when a subscriber reads too slowly and its queue reaches the high water
    mark, new messages for it are dropped. Status updates can afford that; tasks cannot.

What you will see (demo)
  Messages lost by a plain PUB to a subscriber that just connected, none lost by the XPUB
  that waited, three subscribers each getting only their topics, and a slow subscriber that
  misses most of a burst.

Try it
  python 01-zmq-basics/pub_sub.py publisher --endpoint tcp://127.0.0.1:5556
  python 01-zmq-basics/pub_sub.py subscriber --endpoint tcp://127.0.0.1:5556 --topic node.2
  Start a second subscriber with --topic node. and compare what each one prints.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from zmq_basics import lesson

ENDPOINT = "tcp://127.0.0.1:5556"
BURST = 10_000
TOPICS = [b"node.1.status", b"node.2.status", b"node.10.status", b"job.done"]
log = logging.getLogger("pub_sub")


def subscriber(ctx: lesson.Ctx, where: str, *prefixes: bytes, hwm: int = 1000) -> lesson.Sock:
    sock = ctx.socket(zmq.SUB)
    sock.rcvhwm = hwm  # like every option that shapes a connection: set it before connect()
    lesson.connect(sock, where)
    for prefix in prefixes:
        sock.subscribe(prefix)
    return sock


def drain(sock: lesson.Sock, idle_s: float = 0.5) -> list[list[bytes]]:
    """Everything that arrives until nothing has arrived for idle_s."""
    received = []
    while sock.poll(int(idle_s * 1000)):
        received.append(sock.recv_multipart())
    return received


def wait_for_subscriptions(xpub: lesson.Sock, count: int, timeout_s: float = 5.0) -> None:
    for _ in range(count):
        if not xpub.poll(int(timeout_s * 1000)):
            raise lesson.LessonError(f"no subscription arrived within {timeout_s}s")
        xpub.recv()  # b"\x01" + prefix: the subscriber is attached and listening


def burst_to_new_subscriber(ctx: lesson.Ctx, wait: bool) -> int:
    """Publish BURST messages right after a subscriber connects; return how many it got.

    Both queues are unbounded here (HWM 0) so that only joining late can lose messages.
    """
    with ctx.socket(zmq.XPUB if wait else zmq.PUB) as pub:
        pub.sndhwm = 0
        sub = subscriber(ctx, lesson.bind(pub, lesson.ANY_LOCAL_PORT), b"", hwm=0)
        if wait:
            wait_for_subscriptions(pub, 1)
        for seq in range(BURST):
            pub.send_multipart([b"tick", str(seq).encode()])
        got = len(drain(sub))
        sub.close()
    return got


def topic_filtering(ctx: lesson.Ctx) -> dict[bytes, set[bytes]]:
    prefixes = [b"node.1", b"node.", b""]
    with ctx.socket(zmq.XPUB) as pub:
        where = lesson.bind(pub, lesson.ANY_LOCAL_PORT)
        subs = {prefix: subscriber(ctx, where, prefix) for prefix in prefixes}
        wait_for_subscriptions(pub, len(prefixes))
        for topic in TOPICS:
            pub.send_multipart([topic, b"payload"])
        seen = {prefix: {frames[0] for frames in drain(sock, 0.3)} for prefix, sock in subs.items()}
        for sock in subs.values():
            sock.close()
    return seen


def slow_subscriber(ctx: lesson.Ctx, hwm: int = 100, count: int = 20_000) -> int:
    """A subscriber that reads nothing while PUB sends `count` 1 KB messages; return its total."""
    with ctx.socket(zmq.XPUB) as pub:
        pub.sndhwm = hwm
        sub = subscriber(ctx, lesson.bind(pub, lesson.ANY_LOCAL_PORT), b"", hwm=hwm)
        wait_for_subscriptions(pub, 1)
        for _ in range(count):
            pub.send(b"x" * 1024)  # never blocks, never fails: PUB drops instead
        got = len(drain(sub))
        sub.close()
    return got


@dataclass
class PubSubDemo:
    naive_received: int
    synced_received: int
    topics_seen: dict[bytes, set[bytes]]
    slow_received: int
    slow_sent: int = 20_000


def demo() -> PubSubDemo:
    with zmq.Context() as ctx:
        ctx.linger = 0
        return PubSubDemo(
            naive_received=burst_to_new_subscriber(ctx, wait=False),
            synced_received=burst_to_new_subscriber(ctx, wait=True),
            topics_seen=topic_filtering(ctx),
            slow_received=slow_subscriber(ctx),
        )


def expected_topics(prefix: bytes) -> set[bytes]:
    return {topic for topic in TOPICS if topic.startswith(prefix)}


def cmd_demo(_: argparse.Namespace) -> int:
    r = demo()
    print(f"slow joiner: plain PUB lost {BURST - r.naive_received} of {BURST}")
    print(f"XPUB waited for the subscription: lost {BURST - r.synced_received} of {BURST}")
    for prefix, seen in r.topics_seen.items():
        print(f"subscribed to {prefix!r:10} got {sorted(seen)}")
    print(f"slow subscriber (HWM 100): got {r.slow_received} of {r.slow_sent}, the rest dropped")
    ok = (
        r.naive_received < BURST
        and r.synced_received == BURST
        and all(seen == expected_topics(prefix) for prefix, seen in r.topics_seen.items())
        and r.slow_received < r.slow_sent
    )
    figures = {
        "burst": BURST,
        "slow_joiner_lost": BURST - r.naive_received,
        "xpub_wait_lost": BURST - r.synced_received,
        "slow_subscriber_sent": r.slow_sent,
        "slow_subscriber_received": r.slow_received,
    }
    return lesson.verdict(
        "pub_sub", ok, "slow-joiner loss seen and fixed, prefixes filtered, HWM drops", figures
    )


def cmd_publisher(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        pub = ctx.socket(zmq.PUB)
        log.info("publisher ready on %s", lesson.bind(pub, args.endpoint))
        seq = 0
        while True:
            for topic in TOPICS:
                pub.send_multipart([topic, str(seq).encode()])
            seq += 1
            time.sleep(args.interval)  # a paced status feed, not synchronisation


def cmd_subscriber(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        sub = subscriber(ctx, args.endpoint, *(t.encode() for t in args.topic))
        while True:
            topic, body = sub.recv_multipart()
            log.info("%s %s", topic.decode(), body.decode())


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    pub = lesson.add_role(
        roles, "publisher", cmd_publisher, "publish status on every topic", endpoint=ENDPOINT
    )
    pub.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")
    sub = lesson.add_role(
        roles, "subscriber", cmd_subscriber, "print matching messages", endpoint=ENDPOINT
    )
    sub.add_argument("--topic", action="append", default=[], help="prefix (repeatable; none = all)")
    lesson.add_role(roles, "demo", cmd_demo, "run every case and check the lesson")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
