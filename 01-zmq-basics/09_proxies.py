"""Lesson 09, proxies: zmq.proxy joins two sockets into a forwarder or a shared queue, and obeys a
control socket.

zguide: chapter 2, "Intermediaries and Proxies", "The Dynamic Discovery Problem", "Shared Queue
(DEALER and ROUTER sockets)", "ZeroMQ's Built-In Proxy Function"; the libzmq reference
zmq_proxy_steerable.
Terms: proxy, forwarder, XSUB, XPUB, shared queue, steerable, PAUSE, RESUME, TERMINATE,
STATISTICS.

What it shows
  * zmq.proxy(frontend, backend) moves every message from each socket to the other, in
    ZeroMQ's C code, until the context ends. Two socket pairs make the classic devices:
    XSUB-XPUB, a forwarder publishers and subscribers both connect to, so neither side needs
    the other's address; ROUTER-DEALER, a shared queue between REQ clients and REP workers.
  * Through a forwarder, subscriptions travel upstream as messages (XPUB hands them to the
    proxy, XSUB sends them on), so a publisher with an XPUB socket still sees who listens.
  * zmq.proxy_steerable adds a control socket: STATISTICS answers eight counters (frames and
    bytes, in and out, on each side), TERMINATE ends the proxy cleanly. PAUSE and RESUME
    exist too, but libzmq 4.3.5 (the one pyzmq's wheels bundle) has them swapped, fixed
    after that release (libzmq pull request 4600); the demo leaves them alone.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  publisher XPUB -> forwarder.front XSUB: data down, subscriptions up
  subscriber SUB -> forwarder.back XPUB: data down, subscriptions up
  client REQ -> queue.front ROUTER: [client id, "", request]
  worker REP -> queue.back DEALER: the same, passed through
  steer REQ -> queue.control REP: STATISTICS, TERMINATE

Try it
  python 09_proxies.py forwarder                       (publishers connect to 6000, subs to 6001)
  python 09_proxies.py queue                           (clients to 6002, workers to 6003)
  python 09_proxies.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `TOPIC = b"node."` -> `TOPIC = b"job."`: PASS, "got [b'job.done']"
      The publisher sees the new subscription cross the forwarder, and sends only what matches.
  * `REQUESTS = 2` -> `REQUESTS = 5`: PASS, "15 frames in from clients"
      Three frames a request on the clients' side: the routing id the ROUTER adds, the empty
      delimiter REQ adds, and the body.
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import sys

import zmq

WAIT_MS = 5000
TOPIC = b"node."  # what the subscriber behind the forwarder asks for
TOPICS = (b"node.1.up", b"job.done", b"node.2.up")  # what the publisher sends
REQUESTS = 2  # round trips through the queue before its STATISTICS
Socket = zmq.Socket[bytes]


def forwarder(frontend: str, backend: str) -> None:
    ctx = zmq.Context()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xsub.bind(frontend)  # publishers connect here
    xpub.bind(backend)  # subscribers connect here
    print(f"forwarder: publishers to {frontend}, subscribers to {backend}", flush=True)
    zmq.proxy(xsub, xpub)  # returns only when the context is terminated


def queue(frontend: str, backend: str, control: str) -> None:
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    # A REP control socket: libzmq 4.3.5, the one pyzmq's wheels bundle, answers every command.
    commands = ctx.socket(zmq.REP)
    router.bind(frontend)  # REQ clients connect here
    dealer.bind(backend)  # REP workers connect here
    commands.bind(control)
    print(f"queue: clients to {frontend}, workers to {backend}, control {control}", flush=True)
    zmq.proxy_steerable(router, dealer, None, commands)  # returns on TERMINATE
    print("queue: terminated by its control socket", flush=True)
    ctx.destroy(linger=0)


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def through_forwarder(ctx: zmq.Context[Socket]) -> tuple[bytes, list[bytes]]:
    """Subscribe to TOPIC behind a forwarder: return the subscription the publisher saw
    and the topics the subscriber got."""
    frontend, backend = free_endpoint(), free_endpoint()
    proxy = subprocess.Popen([sys.executable, __file__, "forwarder", frontend, backend])
    try:
        publisher, subscriber = ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB)
        publisher.connect(frontend)
        subscriber.connect(backend)
        subscriber.subscribe(TOPIC)
        seen = publisher.recv() if publisher.poll(WAIT_MS) else b""  # it came through the proxy
        for topic in TOPICS:
            publisher.send_multipart([topic, b"..."])
        got = []
        while subscriber.poll(500):
            got.append(subscriber.recv_multipart()[0])
    finally:
        proxy.kill()
        proxy.wait()
    return seen, got


def request(client: Socket, worker: Socket, body: bytes, paused: bool = False) -> bytes | None:
    """One REQ-REP round trip through the queue; the worker answers only if the request came."""
    client.send(body)
    if not worker.poll(300 if paused else WAIT_MS):
        return None
    worker.send(b"done: " + worker.recv())
    return client.recv() if client.poll(WAIT_MS) else None


def command(steer: Socket, name: bytes) -> list[bytes]:
    """Send one control command and return the proxy's answer (empty but for STATISTICS)."""
    steer.send(name)
    if not steer.poll(WAIT_MS):
        raise TimeoutError(f"the proxy did not answer {name.decode()} within {WAIT_MS} ms")
    return steer.recv_multipart()


def through_steered_queue(ctx: zmq.Context[Socket]) -> list[str]:
    frontend, backend, control = free_endpoint(), free_endpoint(), free_endpoint()
    proxy = subprocess.Popen([sys.executable, __file__, "queue", frontend, backend, control])
    log = []
    try:
        client, worker, steer = ctx.socket(zmq.REQ), ctx.socket(zmq.REP), ctx.socket(zmq.REQ)
        client.connect(frontend)
        worker.connect(backend)
        steer.connect(control)
        for n in range(1, REQUESTS + 1):
            log.append(f"request {n}: {request(client, worker, b'request %d' % n)!r}")
        counters = [struct.unpack("=Q", frame)[0] for frame in command(steer, b"STATISTICS")]
        log.append(f"STATISTICS: {counters[0]} frames in from clients, {counters[4]} from workers")
        command(steer, b"TERMINATE")
        log.append(f"after TERMINATE the queue exited with status {proxy.wait(WAIT_MS / 1000)}")
    finally:
        proxy.kill()
        proxy.wait()
    return log


def demo() -> int:
    ctx = zmq.Context()
    ctx.linger = 0
    subscription, topics = through_forwarder(ctx)
    print(f"forwarder: the publisher saw the subscription {subscription!r}; got {topics}")
    steps = through_steered_queue(ctx)
    for line in steps:
        print(f"queue: {line}")
    ctx.destroy()
    answers = [f"request {n}: {b'done: request %d' % n!r}" for n in range(1, REQUESTS + 1)]
    # 3 frames a message each way: the client's routing id (added by ROUTER, kept by REP), the
    # empty delimiter and the body (lesson 06)
    counted = f"STATISTICS: {3 * REQUESTS} frames in from clients, {3 * REQUESTS} from workers"
    expected_topics = [t for t in TOPICS if t.startswith(TOPIC)]
    problems = [
        *([f"the publisher saw {subscription!r}"] if subscription != b"\x01" + TOPIC else []),
        *([f"the subscriber got {topics}"] if topics != expected_topics else []),
        *([f"answers {steps[:REQUESTS]}"] if steps[:REQUESTS] != answers else []),
        *(
            [f"{steps[REQUESTS : REQUESTS + 1]}, not {counted}"]
            if steps[REQUESTS : REQUESTS + 1] != [counted]
            else []
        ),
        *(
            [f"{steps[-1]}"]
            if steps[-1] != "after TERMINATE the queue exited with status 0"
            else []
        ),
    ]
    if problems:
        print("FAIL 09_proxies: " + "; ".join(problems))
        return 1
    print(
        "PASS 09_proxies: subscriptions crossed the forwarder; "
        "the queue counted its traffic and ended on command"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    fwd = roles.add_parser("forwarder", help="XSUB-XPUB")
    fwd.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:6000")
    fwd.add_argument("backend", nargs="?", default="tcp://127.0.0.1:6001")
    que = roles.add_parser("queue", help="ROUTER-DEALER, steered by a REP control socket")
    que.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:6002")
    que.add_argument("backend", nargs="?", default="tcp://127.0.0.1:6003")
    que.add_argument("control", nargs="?", default="tcp://127.0.0.1:6004")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "forwarder":
            forwarder(args.frontend, args.backend)
        elif args.role == "queue":
            queue(args.frontend, args.backend, args.control)
        else:
            return demo()
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
