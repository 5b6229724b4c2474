"""Lesson 07, load balancing: a ROUTER-ROUTER broker gives each request to the idlest worker.

zguide: chapter 3, "ROUTER Broker and DEALER Workers", "A Load Balancing Message Broker" and
"The Asynchronous Client/Server Pattern".
Terms: ROUTER, DEALER, broker, LRU (least recently used: the worker idle longest goes first),
request id, asynchronous client.

What it shows
  * ROUTER puts the sender's identity in front of every message it receives, and sends each
    outgoing message to the peer named by its first frame. That is all a broker needs.
  * DEALER talks asynchronously: a client may have many requests in flight at once and match
    the replies by a request id it chose, in whatever order they come back.
  * Load balancing by least recently used: workers say READY, the broker keeps them in a queue
    and gives each request to the worker that has been idle longest. While no worker is free
    the broker stops reading requests, so clients wait in their own queues.

  * The demo runs every role as a thread of one process, sharing one context (lesson 10
    says why that is allowed and sockets are not shared); by hand each is its own process.
    The broker's two sockets are made in the main thread and used in the broker's: a socket
    may move to another thread, never be used by two at once, and starting a thread and
    joining it are the full memory barriers the move needs (zmq_socket(3)).

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client DEALER -> broker.front ROUTER: [request id, body]; [client, request id, body] inside
  worker DEALER -> broker.back ROUTER: READY, then [client, request id, reply]

Try it
  python 07_load_balancing.py broker
  python 07_load_balancing.py worker --name w1      (and another with --name w2)
  python 07_load_balancing.py client --requests 20
  python 07_load_balancing.py demo   (4 clients, 5 requests in flight each, 3 workers)
  Stop w1 while the client runs: requests already given to it are lost; step 02 fixes that.

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `CLIENTS, REQUESTS, WORKERS = 4, 5, 3` -> `CLIENTS, REQUESTS, WORKERS = 2, 10, 5`: PASS,
    "20 of 20 replies matched, 5 of 5 workers used"
      More workers than requests in flight at once still all get a share: LRU hands each
      request to the worker idle longest.
  * `sock.send(READY)` -> `pass`: FAIL, "0 of 3 workers said READY"
      A worker the broker has never heard from is not in its queue, so it is never given work.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import zmq

FRONTEND, BACKEND = "tcp://127.0.0.1:5559", "tcp://127.0.0.1:5560"
READY = b"READY"
POLL_MS = 100  # how often loops look at their stop flag
CLIENTS, REQUESTS, WORKERS = 4, 5, 3  # the demo's: each client's requests are in flight at once
WAIT_S = 5.0  # for the workers' READY, and for each client's replies
Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


def broker(
    frontend: Socket,
    backend: Socket,
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


def worker(ctx: Context, where: str, name: str, stop: threading.Event) -> int:
    """Serve requests until stopped; return how many this worker answered."""
    with ctx.socket(zmq.DEALER) as sock:
        sock.routing_id = name.encode()  # chosen identity: the broker's logs become readable
        sock.connect(where)
        sock.send(READY)
        served = 0
        while not stop.is_set():
            if sock.poll(POLL_MS):
                client, request_id, body = sock.recv_multipart()
                time.sleep(0.002)  # stands in for real work
                sock.send_multipart([client, request_id, f"{name}:".encode() + body])
                served += 1
    return served


def client(ctx: Context, where: str, requests: int, timeout_s: float = 10) -> Counter[str]:
    """Send every request at once, then collect the replies in any order; count who served them."""
    with ctx.socket(zmq.DEALER) as sock:
        sock.connect(where)
        pending = {str(n).encode(): f"job {n}".encode() for n in range(requests)}
        for request_id, body in pending.items():
            sock.send_multipart([request_id, body])
        served_by: Counter[str] = Counter()
        while pending:
            if not sock.poll(int(timeout_s * 1000)):
                raise TimeoutError(f"{len(pending)} replies missing after {timeout_s}s")
            request_id, reply = sock.recv_multipart()
            name, _, body = reply.partition(b":")
            if pending.pop(request_id, None) == body:
                served_by[name.decode()] += 1
    return served_by


def demo(clients: int = CLIENTS, requests: int = REQUESTS, workers: int = WORKERS) -> int:
    stop = threading.Event()
    ctx = zmq.Context()
    ctx.linger = 0
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    frontend.bind("tcp://127.0.0.1:*")
    backend.bind("tcp://127.0.0.1:*")
    all_workers_ready = threading.Event()
    results: dict[str, Any] = {}  # what each thread returned, by its name

    announced = [0]

    def note_ready(count: int) -> None:
        announced[0] = count
        if count == workers:
            all_workers_ready.set()

    def run(name: str, role: Callable[..., Any], *args: object) -> threading.Thread:
        def keep_outcome() -> None:
            try:
                results[name] = role(*args)
            except TimeoutError as exc:  # reported in the verdict, not as a thread's traceback
                results[name] = exc

        thread = threading.Thread(target=keep_outcome, name=name)
        thread.start()
        return thread

    # Made here, used only by the broker's thread from now on, closed here after it ended.
    broker_thread = run("broker", broker, frontend, backend, stop, note_ready)
    back_at = backend.getsockopt_string(zmq.LAST_ENDPOINT)
    front_at = frontend.getsockopt_string(zmq.LAST_ENDPOINT)
    worker_threads = [run(f"w{n}", worker, ctx, back_at, f"w{n}", stop) for n in range(workers)]
    # Clients start once every worker is known, so the shares show LRU, not start-up order.
    if all_workers_ready.wait(timeout=WAIT_S):
        client_threads = [
            run(f"client {n}", client, ctx, front_at, requests, WAIT_S) for n in range(clients)
        ]
        for thread in client_threads:
            thread.join(timeout=WAIT_S + 5)
    stop.set()
    for thread in (broker_thread, *worker_threads):
        thread.join(timeout=5)
    frontend.close()
    backend.close()
    ctx.term()

    envelope: list[bytes] = results.get("broker") or []
    timeouts = [str(r) for r in results.values() if isinstance(r, TimeoutError)]
    served_by: Counter[str] = sum(
        (r for name, r in results.items() if isinstance(r, Counter)), Counter()
    )
    print("a request as the frontend ROUTER received it, frame by frame:")
    for frame, meaning in zip(envelope, ["client identity", "request id", "body"], strict=False):
        print(f"  {frame!r:24} <- {meaning}")
    print(f"replies per worker: {dict(sorted(served_by.items()))}")
    total = sum(served_by.values())
    ok = total == clients * requests and len(served_by) == workers and len(envelope) == 3
    why = (
        f"; {announced[0]} of {workers} workers said READY within {WAIT_S:g} s"
        if announced[0] < workers
        else "".join(f"; a client: {t}" for t in timeouts[:1])
    )
    print(
        f"{'PASS' if ok else 'FAIL'} 07_load_balancing: {total} of {clients * requests} "
        f"replies matched, {len(served_by)} of {workers} workers used{why}"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    broker_role = roles.add_parser("broker", help="the LRU broker")
    broker_role.add_argument("--frontend", default=FRONTEND)
    broker_role.add_argument("--backend", default=BACKEND)
    worker_role = roles.add_parser("worker", help="a DEALER worker")
    worker_role.add_argument("--backend", default=BACKEND)
    worker_role.add_argument("--name", default="w1")
    client_role = roles.add_parser("client", help="a DEALER with all its requests in flight")
    client_role.add_argument("--frontend", default=FRONTEND)
    client_role.add_argument("--requests", type=int, default=10)
    roles.add_parser("demo", help="every role as a thread, checked")
    args = parser.parse_args()
    ctx = zmq.Context()
    try:
        if args.role == "broker":
            frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
            frontend.bind(args.frontend)
            backend.bind(args.backend)
            print(f"broker: clients on {args.frontend}, workers on {args.backend}")
            broker(frontend, backend, threading.Event())
        elif args.role == "worker":
            worker(ctx, args.backend, args.name, threading.Event())
        elif args.role == "client":
            ctx.linger = 0
            print(f"replies per worker: {dict(client(ctx, args.frontend, args.requests))}")
        else:
            return demo()
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
