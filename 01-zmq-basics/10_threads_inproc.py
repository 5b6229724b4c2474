"""Lesson 10, threads: one context, a socket per thread, inproc between them, PAIR to signal.

zguide: chapter 2, "Multithreading with ZeroMQ" and "Signaling Between Threads (PAIR Sockets)".
Terms: context, inproc, PAIR, thread safety, multithreaded server.

What it shows
  * One context per process, shared by all its threads: the context is thread-safe, sockets
    are not. Each thread makes, uses and closes its own sockets; threads share data only by
    sending messages.
  * inproc:// connects sockets of one context through memory: no TCP, no I/O thread hop.
    Since libzmq 4.0 either side may come first, as with TCP: a connect to an inproc name
    nobody has bound yet waits for the bind (older versions refused it, and old texts still
    say "bind before connect").
  * PAIR is the socket for one thread telling another "I am ready" or "here is the next step":
    exactly two peers, no routing, nothing dropped. A relay of three steps shows it.
  * A multithreaded server is a proxy (lesson 09) between a TCP ROUTER facing the clients and
    an inproc DEALER facing worker threads, each with its own REP socket.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  step1 PAIR -> step2 PAIR: "ready" over inproc
  client REQ -> server.front ROUTER: a request over tcp
  worker REP -> server.back DEALER: the request over inproc, to one of the threads

Try it
  python 10_threads_inproc.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `CLIENTS, THREADS = 40, 4` -> `CLIENTS, THREADS = 40, 1`: PASS,
    "40 of 40 requests served by 1 of 1 worker threads"
      One thread serves everything, in turn; the inproc DEALER deals to the peers it has.
  * `CLIENTS, THREADS = 40, 4` -> `CLIENTS, THREADS = 40, 8`: PASS, "served by 8 of 8"
      The DEALER deals the forty requests round-robin, so every thread gets its share.
  * `threading.Thread(target=step1).start()` -> `pass`,
    `from_step1.bind("inproc://step2")  # either side may come first (libzmq >= 4.0)` ->
    `threading.Thread(target=step1).start(); from_step1.bind("inproc://step2")`: PASS,
    "the PAIR relay ran in order"
      Step 1's thread may now connect before step 2 binds: inproc waits for the bind.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

import zmq

WAIT_MS = 5000
CLIENTS, THREADS = 40, 4  # requests all in flight at once, worker threads serving them
Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


def relay(ctx: Context) -> list[str]:
    """Three steps, each a thread or the main thread, each signalling the next over PAIR."""
    order: list[str] = []

    def step1() -> None:
        to_step2 = ctx.socket(zmq.PAIR)
        to_step2.connect("inproc://step2")
        order.append("step 1 ready")
        to_step2.send(b"ready")
        to_step2.close()

    def step2() -> None:
        from_step1 = ctx.socket(zmq.PAIR)
        from_step1.bind("inproc://step2")  # either side may come first (libzmq >= 4.0)
        threading.Thread(target=step1).start()
        if from_step1.poll(WAIT_MS):
            from_step1.recv()
            to_step3 = ctx.socket(zmq.PAIR)
            to_step3.connect("inproc://step3")
            order.append("step 2 ready")
            to_step3.send(b"ready")
            to_step3.close()
        from_step1.close()

    from_step2 = ctx.socket(zmq.PAIR)
    from_step2.bind("inproc://step3")
    threading.Thread(target=step2).start()
    if from_step2.poll(WAIT_MS):
        from_step2.recv()
        order.append("step 3: all steps ready")
    from_step2.close()
    return order


def worker_thread(ctx: Context, name: str, connected: threading.Barrier) -> None:
    sock = ctx.socket(zmq.REP)  # made in this thread, used only here
    sock.connect("inproc://workers")
    connected.wait(WAIT_MS / 1000)  # the server deals only to the workers already connected
    while True:
        try:
            request = sock.recv()
        except zmq.ContextTerminated:  # ctx.term() in the main thread: time to go
            break
        time.sleep(0.001)  # stands in for real work
        sock.send(name.encode() + b" did " + request)
    sock.close()


def run_proxy(frontend: Socket, backend: Socket) -> None:
    try:
        zmq.proxy(frontend, backend)  # runs until the context is terminated
    except zmq.ContextTerminated:
        frontend.close()  # term() waits until every socket of the context is closed
        backend.close()


def threaded_server(ctx: Context, clients: int, threads: int) -> Counter[str]:
    """A TCP ROUTER, an inproc DEALER, worker threads behind; REQ clients in front."""
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    frontend.bind("tcp://127.0.0.1:*")
    backend.bind("inproc://workers")
    connected = threading.Barrier(threads + 1)
    for n in range(threads):
        worker = threading.Thread(
            target=worker_thread, args=(ctx, f"thread {n}", connected), daemon=True
        )
        worker.start()
    connected.wait(WAIT_MS / 1000)  # data passes as messages; a barrier only says "all here"
    threading.Thread(target=run_proxy, args=(frontend, backend), daemon=True).start()
    served: Counter[str] = Counter()
    requesters = [ctx.socket(zmq.REQ) for _ in range(clients)]
    for number, req in enumerate(requesters):
        req.connect(frontend.getsockopt_string(zmq.LAST_ENDPOINT))
        req.send(b"request %d" % number)  # all in flight at once, one per client
    for req in requesters:
        if req.poll(WAIT_MS):
            served[req.recv().split(b" did ")[0].decode()] += 1
        req.close()
    return served


def demo() -> int:
    ctx = zmq.Context()
    ctx.linger = 0
    order = relay(ctx)
    for line in order:
        print(f"relay: {line}")
    served = threaded_server(ctx, clients=CLIENTS, threads=THREADS)
    print(f"threaded server, {CLIENTS} requests: {dict(sorted(served.items()))}")
    ctx.term()  # ends the proxy and every worker's recv() with ContextTerminated
    # Every request is in flight before any is answered, so the DEALER deals them round-robin
    # to every thread (as long as there are at least as many requests as threads).
    busy = min(THREADS, CLIENTS)
    ok = order == ["step 1 ready", "step 2 ready", "step 3: all steps ready"] and (
        served.total() == CLIENTS and len(served) == busy
    )
    print(
        f"{'PASS' if ok else 'FAIL'} 10_threads_inproc: "
        f"{'the PAIR relay ran in order' if len(order) == 3 else f'the relay stopped at {order}'}; "
        f"{served.total()} of {CLIENTS} requests served by {len(served)} of {busy} worker threads"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo", help="the relay, then the threaded server")
    parser.parse_args()
    try:
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
