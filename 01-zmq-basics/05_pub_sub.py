"""Lesson 05, publish-subscribe: topics by prefix, the slow joiner, and XPUB's cure for it.

zguide: chapter 1, "Getting the Message Out" (the slow joiner); chapter 2, "Pub-Sub Message
Envelopes" and "Node Coordination" (waiting for subscribers: the zguide with a REQ-REP side
channel, this lesson with XPUB, which needs no second socket).
Terms: PUB, SUB, topic, prefix match, slow joiner, XPUB, subscription message, CONFLATE.

What it shows
  * A SUB receives only messages whose first frame starts with a prefix it subscribed to:
    byte prefixes, not words, so "node.1" also matches "node.10.status".
  * The slow joiner: connecting and subscribing take a moment, and whatever PUB sends before
    the subscription reaches it is dropped, silently. It is a race, so the demo gives it
    up to JOIN_TRIES bursts to show itself (one is nearly always enough).
  * The cure is to know when the subscriber is there. An XPUB socket receives each
    subscription as a message (b"\\x01" + prefix), so the publisher can wait for it.
  * PUB never blocks and never errs; lesson 08 shows what it does to a subscriber that reads
    too slowly.
  * CONFLATE on a SUB keeps only the newest message in its queue: for state (a node's load,
    a job's progress), where a reader that fell behind wants now, not the backlog. Not for
    events, and not for multipart messages.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  subscriber SUB -> publisher XPUB: [topic, body] down, b"\x01" + prefix up

Try it
  python 05_pub_sub.py publisher
  python 05_pub_sub.py subscriber --topic node.1       (and another with --topic node.)
  python 05_pub_sub.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `prefixes = [b"node.1", b"node.", b""]` -> `prefixes = [b"node.1.", b"node.", b""]`: PASS,
    "got [b'node.1.status']"
      Prefixes are bytes: a trailing dot is how to say "node 1, not node 10".
  * `WAIT_MS = 5000` -> `WAIT_MS = 0`: FAIL, "no subscription reached the XPUB within 0 ms"
      An XPUB that does not wait for the subscription is a plain PUB again, and would lose
      the start of its burst; the demo stops there rather than publish.
  * `sub.conflate = True  # keep` -> `sub.conflate = False  # keep`: FAIL,
    "CONFLATE: 10000 of 10000 read"
      Without CONFLATE a reader that fell behind reads the whole backlog to reach now.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import zmq

BURST = 10_000
JOIN_TRIES = 3  # bursts the plain PUB gets to show the slow joiner (a race, lost nearly always)
WAIT_MS = 5000
TOPICS = [b"node.1.status", b"node.2.status", b"node.10.status", b"job.done"]
Socket = zmq.Socket[bytes]


def publisher(endpoint: str) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(endpoint)
    print(f"publisher: on {endpoint}", flush=True)
    seq = 0
    while True:
        for topic in TOPICS:
            pub.send_multipart([topic, str(seq).encode()])
        seq += 1
        time.sleep(0.5)  # a paced status feed, not synchronisation


def subscriber(endpoint: str, topics: list[str]) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(endpoint)
    for prefix in topics or [""]:  # no --topic: the empty prefix, which matches everything
        sub.subscribe(prefix.encode())
    while True:
        topic, body = sub.recv_multipart()
        print(f"{topic.decode()} {body.decode()}", flush=True)


def drain(sock: Socket, idle_ms: int = 500) -> list[list[bytes]]:
    """Everything that arrives until nothing has arrived for idle_ms."""
    received = []
    while sock.poll(idle_ms):
        received.append(sock.recv_multipart())
    return received


def burst_to_new_subscriber(ctx: zmq.Context[Socket], wait: bool) -> int:
    """Publish BURST messages right after a subscriber connects; return how many it got.

    With `wait`, an XPUB publishes only once the subscription has arrived, and raises
    TimeoutError when it has not within WAIT_MS."""
    pub = ctx.socket(zmq.XPUB if wait else zmq.PUB)
    pub.sndhwm = 0  # unbounded queues: here only joining late may lose messages
    pub.bind("tcp://127.0.0.1:*")
    sub = ctx.socket(zmq.SUB)
    sub.rcvhwm = 0
    sub.connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    sub.subscribe(b"")
    if wait and pub.poll(WAIT_MS):
        print(f"XPUB received the subscription {pub.recv()!r} before publishing")
    elif wait:
        sub.close()
        pub.close()
        raise TimeoutError(
            f"no subscription reached the XPUB within {WAIT_MS} ms: publishing now would lose "
            "messages to a slow joiner"
        )
    for seq in range(BURST):
        pub.send_multipart([b"tick", str(seq).encode()])
    got = len(drain(sub))
    sub.close()
    pub.close()
    return got


def conflated(ctx: zmq.Context[Socket]) -> list[bytes]:
    """A burst to a SUB with CONFLATE that reads only afterwards: what it gets."""
    pub, sub = ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB)
    pub.sndhwm = 0  # the publisher drops nothing (lesson 08): what is missing, CONFLATE dropped
    sub.conflate = True  # keep only the newest message: for state, where only now matters
    pub.bind("tcp://127.0.0.1:*")
    sub.connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    sub.subscribe(b"")
    try:
        if not pub.poll(WAIT_MS):
            raise TimeoutError(f"no subscription reached the XPUB within {WAIT_MS} ms")
        pub.recv()
        for seq in range(BURST):
            pub.send(b"status %d" % seq)  # one frame: CONFLATE does not take multipart
        got: list[bytes] = []
        while not got or got[-1] != b"status %d" % (BURST - 1):
            if not sub.poll(WAIT_MS):
                break
            got.append(sub.recv())
        return got
    finally:
        sub.close()
        pub.close()


def topic_filtering(ctx: zmq.Context[Socket]) -> dict[bytes, set[bytes]]:
    prefixes = [b"node.1", b"node.", b""]
    pub = ctx.socket(zmq.XPUB)
    pub.xpub_verbose = True  # pass on every subscription, even one another subscriber made
    pub.bind("tcp://127.0.0.1:*")
    subs = {}
    for prefix in prefixes:
        subs[prefix] = ctx.socket(zmq.SUB)
        subs[prefix].connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
        subs[prefix].subscribe(prefix)
    for _ in prefixes:  # every subscriber is listening once its subscription has arrived
        if not pub.poll(WAIT_MS):
            raise TimeoutError(f"a subscription did not arrive within {WAIT_MS} ms")
        pub.recv()
    for topic in TOPICS:
        pub.send_multipart([topic, b"payload"])
    seen = {prefix: {frames[0] for frames in drain(sock, 300)} for prefix, sock in subs.items()}
    for sock in [*subs.values(), pub]:
        sock.close()
    return seen


def demo(json_path: Path | None) -> int:
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        tries, plain = 0, BURST
        while tries < JOIN_TRIES and plain == BURST:
            tries += 1
            plain = burst_to_new_subscriber(ctx, wait=False)
        waited = burst_to_new_subscriber(ctx, wait=True)
        seen = topic_filtering(ctx)
        latest = conflated(ctx)
    except TimeoutError as exc:
        print(f"FAIL 05_pub_sub: {exc}")
        return 1
    finally:
        ctx.destroy()  # closes any socket a failed step left open, then terminates
    print(f"slow joiner: plain PUB lost {BURST - plain} of {BURST} (burst {tries} of {JOIN_TRIES})")
    print(f"XPUB waited for the subscription: lost {BURST - waited} of {BURST}")
    for prefix, topics in seen.items():
        print(f"subscribed to {prefix!r:10} got {sorted(topics)}")
    print(f"CONFLATE: {BURST} sent, {len(latest)} read, the last {latest[-1:]}")
    expected = {prefix: {t for t in TOPICS if t.startswith(prefix)} for prefix in seen}
    problems = [
        *([f"the plain PUB lost nothing in {JOIN_TRIES} bursts"] if plain == BURST else []),
        *([f"the XPUB that waited lost {BURST - waited}"] if waited != BURST else []),
        *([f"prefixes matched {seen}, not {expected}"] if seen != expected else []),
        *(
            [f"CONFLATE: {len(latest)} of {BURST} read, the last {latest[-1:]}"]
            if latest[-1:] != [b"status %d" % (BURST - 1)] or len(latest) > BURST // 10
            else []
        ),
    ]
    if json_path:
        lost = {"slow_joiner_lost": BURST - plain, "xpub_wait_lost": BURST - waited}
        figures = {"burst": BURST, **lost}
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if problems:
        print("FAIL 05_pub_sub: " + "; ".join(problems))
        return 1
    print(
        f"PASS 05_pub_sub: plain PUB lost {BURST - plain}, "
        f"XPUB that waited lost {BURST - waited}; prefixes matched as bytes"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    pub = roles.add_parser("publisher", help="publish status on every topic, twice a second")
    pub.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556")
    sub = roles.add_parser("subscriber", help="print the messages matching --topic")
    sub.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556")
    sub.add_argument("--topic", action="append", default=[], help="a prefix (repeatable)")
    roles.add_parser("demo").add_argument("--json", type=Path, help="save the figures here")
    args = parser.parse_args()
    try:
        if args.role == "publisher":
            publisher(args.endpoint)
        elif args.role == "subscriber":
            subscriber(args.endpoint, args.topic)
        else:
            return demo(args.json)
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
