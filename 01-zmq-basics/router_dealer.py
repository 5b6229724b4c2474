"""ROUTER-DEALER: an asynchronous load-balancing broker, with identities in the envelope.

What it shows
  * ROUTER puts the sender's identity in front of every message it receives, and sends each
    outgoing message to the peer named by its first frame. That is all a broker needs.
  * DEALER talks asynchronously: a client may have many requests in flight at once and match
    the replies by a request id it chose, in whatever order they come back.
  * Load balancing by least recently used: workers say READY, the broker keeps them in a queue
    and gives each request to the worker that has been idle longest. While no worker is free
    the broker stops reading requests, so clients wait in their own queues.

What you will see (demo)
  The envelope of one request as the broker sees it, then 4 clients with 5 requests in flight
  each, served by 3 workers, with the share each worker took.

Try it
  python 01-zmq-basics/router_dealer.py broker
  python 01-zmq-basics/router_dealer.py worker --name w1      (and another with --name w2)
  python 01-zmq-basics/router_dealer.py client --requests 20
  Stop w1 while the client runs: requests already given to it are lost; step 02 fixes that.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq

from zmq_basics import lesson

FRONTEND, BACKEND = "tcp://127.0.0.1:5559", "tcp://127.0.0.1:5560"
READY = b"READY"
POLL_MS = 100  # how often loops look at their stop flag
log = logging.getLogger("router_dealer")


def broker(
    frontend: lesson.Sock,
    backend: lesson.Sock,
    stop: threading.Event,
    on_ready: Callable[[int], None] = lambda workers: None,
) -> list[bytes]:
    """Route requests to the least recently used worker; return the first request's envelope.

    on_ready(n) is called each time a worker announces itself, with the number seen so far.
    """
    announced = 0
    idle_workers: deque[bytes] = deque()
    workers_only, everything = zmq.Poller(), zmq.Poller()
    workers_only.register(backend, zmq.POLLIN)
    everything.register(backend, zmq.POLLIN)
    everything.register(frontend, zmq.POLLIN)
    first_envelope: list[bytes] = []
    while not stop.is_set():
        ready = dict((everything if idle_workers else workers_only).poll(POLL_MS))
        if backend in ready:
            worker, *rest = backend.recv_multipart()  # ROUTER prepended the worker's identity
            idle_workers.append(worker)
            if rest == [READY]:
                announced += 1
                on_ready(announced)
            else:
                frontend.send_multipart(rest)  # [client identity, request id, reply]
        if frontend in ready:
            request = frontend.recv_multipart()  # [client identity, request id, body]
            first_envelope = first_envelope or request
            backend.send_multipart([idle_workers.popleft(), *request])
    return first_envelope


def worker(ctx: lesson.Ctx, where: str, name: str, stop: threading.Event) -> int:
    """Serve requests until stopped; return how many this worker answered."""
    with ctx.socket(zmq.DEALER) as sock:
        sock.routing_id = name.encode()  # chosen identity: the broker's logs become readable
        lesson.connect(sock, where)
        sock.send(READY)
        served = 0
        while not stop.is_set():
            if sock.poll(POLL_MS):
                client, request_id, body = sock.recv_multipart()
                time.sleep(0.002)  # stands in for real work
                sock.send_multipart([client, request_id, f"{name}:".encode() + body])
                served += 1
    return served


def client(ctx: lesson.Ctx, where: str, requests: int, timeout_s: float = 10) -> Counter[str]:
    """Send every request at once, then collect the replies in any order; count who served them."""
    with ctx.socket(zmq.DEALER) as sock:
        lesson.connect(sock, where)
        pending = {str(n).encode(): f"job {n}".encode() for n in range(requests)}
        for request_id, body in pending.items():
            sock.send_multipart([request_id, body])
        served_by: Counter[str] = Counter()
        while pending:
            if not sock.poll(int(timeout_s * 1000)):
                raise lesson.LessonError(f"{len(pending)} replies missing after {timeout_s}s")
            request_id, reply = sock.recv_multipart()
            name, _, body = reply.partition(b":")
            if pending.pop(request_id, None) == body:
                served_by[name.decode()] += 1
    return served_by


@dataclass
class RouterDealerDemo:
    envelope: list[bytes]
    served_by: Counter[str]
    requests: int


def demo(clients: int = 4, requests: int = 5, workers: int = 3) -> RouterDealerDemo:
    stop = threading.Event()
    with zmq.Context() as ctx:
        ctx.linger = 0
        frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
        front_at = lesson.bind(frontend, lesson.ANY_LOCAL_PORT)
        back_at = lesson.bind(backend, lesson.ANY_LOCAL_PORT)
        all_workers_ready = threading.Event()

        def note_ready(announced: int) -> None:
            if announced == workers:
                all_workers_ready.set()

        broker_role = lesson.RoleThread(broker, frontend, backend, stop, note_ready)
        worker_roles = [
            lesson.RoleThread(worker, ctx, back_at, f"w{n}", stop) for n in range(1, workers + 1)
        ]
        client_roles = [lesson.RoleThread(client, ctx, front_at, requests) for _ in range(clients)]
        served_by: Counter[str] = Counter()
        try:
            for role in (broker_role, *worker_roles):
                role.start()
            # Clients start once every worker is known, so the shares show LRU, not start-up order.
            if not all_workers_ready.wait(timeout=10):
                raise lesson.LessonError("workers did not announce themselves within 10s")
            for role in client_roles:
                role.start()
            for role in client_roles:
                role.join(timeout=30)
                served_by += role.result
        finally:
            stop.set()
            for role in (broker_role, *worker_roles):
                if role.ident is not None:  # started
                    role.join(timeout=5)
    return RouterDealerDemo(broker_role.result, served_by, clients * requests)


def cmd_demo(_: argparse.Namespace) -> int:
    result = demo()
    print("a request as the frontend ROUTER received it, frame by frame:")
    for frame, meaning in zip(
        result.envelope, ["client identity", "request id", "body"], strict=True
    ):
        print(f"  {frame!r:24} <- {meaning}")
    print(f"replies per worker: {dict(sorted(result.served_by.items()))}")
    total = sum(result.served_by.values())
    ok = total == result.requests and len(result.served_by) == 3 and len(result.envelope) == 3
    return lesson.verdict(
        "router_dealer", ok, f"{total}/{result.requests} replies matched, all 3 workers used"
    )


def cmd_broker(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
        log.info(
            "broker ready on %s (clients), %s (workers)",
            lesson.bind(frontend, args.frontend),
            lesson.bind(backend, args.backend),
        )
        broker(frontend, backend, threading.Event())
    return 0


def cmd_worker(args: argparse.Namespace) -> None:
    with zmq.Context() as ctx:
        worker(ctx, args.backend, args.name, threading.Event())


def cmd_client(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        ctx.linger = 0
        log.info("replies per worker: %s", dict(client(ctx, args.frontend, args.requests)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    lesson.add_role(
        roles, "broker", cmd_broker, "the LRU broker", frontend=FRONTEND, backend=BACKEND
    )
    worker_role = lesson.add_role(roles, "worker", cmd_worker, "a DEALER worker", backend=BACKEND)
    worker_role.add_argument("--name", default="w1")
    client_role = lesson.add_role(
        roles, "client", cmd_client, "a DEALER, requests in flight", frontend=FRONTEND
    )
    client_role.add_argument("--requests", type=lesson.positive_int, default=10)
    lesson.add_role(roles, "demo", cmd_demo, "run every role and check the lesson")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
