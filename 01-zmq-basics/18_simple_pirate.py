"""Lesson 18, Simple Pirate: lesson 11's retrying client in front of lesson 07's queue, and what
each part does when a worker dies.

zguide: chapter 4, "Basic Reliable Queuing (Simple Pirate Pattern)".
Terms: Simple Pirate, least recently used queue, READY, lost request, retry.

What it shows
  * The queue is lesson 07's, as simple as it gets: workers say READY, the queue keeps them
    in the order they became free and hands each request to the one idle longest. It never
    asks whether a worker is alive.
  * So a worker that dies while it waits in that list is still in it. The queue gives the
    next request to it; a ROUTER sending to an address whose connection is gone drops the
    message without a word (lesson 08), and the request is lost.
  * The client is lesson 11's: no reply within REPLY_TIMEOUT_MS, a new socket and the same
    request again. The retry reaches the queue, which has by now forgotten the dead worker
    (it was taken off the list when the lost request went to it), and a live worker answers.
  * Reliability lives in the client alone, and a dead worker costs one timeout. Lesson 12
    puts heartbeats between the queue and the workers so that the queue forgets the dead
    before it gives them anything; lesson 15 also sends what they held to another worker.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> queue.front ROUTER: a request, again on a timeout
  worker REQ -> queue.back ROUTER: READY, then [client, "", reply]

Try it
  python 18_simple_pirate.py queue
  python 18_simple_pirate.py worker --name A          (and B; stop one with Ctrl-C)
  python 18_simple_pirate.py client --requests 10
  python 18_simple_pirate.py demo   (two workers; A killed while it waits first in line)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `REPLY_TIMEOUT_MS, ATTEMPTS = 1000, 3` -> `REPLY_TIMEOUT_MS, ATTEMPTS = 1000, 1`: FAIL,
    "no reply after 1 attempt"
      Without the retry, the request the queue gave the dead worker is simply gone.
  * `REQUESTS = 8` -> `REQUESTS = 20`: PASS, "20 of 20 answered"
      One dead worker costs one retry however long the run: after it, B does everything.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from queue import Empty, Queue

import zmq

READY = b"\x01"
REPLY_TIMEOUT_MS, ATTEMPTS = 1000, 3  # the client's Lazy Pirate settings (lesson 11)
REQUESTS = 8
WAIT_MS = 5000


def queue(frontend_at: str, backend_at: str) -> None:
    """Lesson 07's least-recently-used queue, with REQ clients and REQ workers."""
    ctx = zmq.Context()
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    frontend.bind(frontend_at)
    backend.bind(backend_at)
    print(f"queue: clients on {frontend_at}, workers on {backend_at}", flush=True)
    idle: deque[bytes] = deque()
    workers_only, both = zmq.Poller(), zmq.Poller()
    for poller, sockets in ((workers_only, [backend]), (both, [backend, frontend])):
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
    while True:
        ready = dict((both if idle else workers_only).poll())
        if backend in ready:  # [worker, b"", READY] or [worker, b"", client, b"", reply]
            worker, _empty, *message = backend.recv_multipart()
            idle.append(worker)
            if message == [READY]:
                print(f"queue: {worker.hex()} is READY", flush=True)
            else:
                frontend.send_multipart(message)
        if frontend in ready:  # [client, b"", request]
            worker = idle.popleft()  # alive or not: the queue cannot tell
            backend.send_multipart([worker, b"", *frontend.recv_multipart()])


def worker(backend_at: str, name: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)  # REQ: the envelope (client, b"") comes back for free
    sock.connect(backend_at)
    sock.send(READY)
    print(f"{name}: ready", flush=True)
    while True:
        client, empty, request = sock.recv_multipart()
        sock.send_multipart([client, empty, name.encode() + b" did " + request])


def client(
    frontend_at: str, requests: int, on_reply: Callable[[list[bytes]], None] = lambda r: None
) -> tuple[list[bytes], list[int]]:
    """Lesson 11's Lazy Pirate: (the replies, the numbers of the requests that were retried).
    `on_reply` sees the replies so far after each one. Raises TimeoutError when a request got
    no reply in ATTEMPTS tries."""
    ctx = zmq.Context()
    replies, retried = [], []
    try:
        for number in range(requests):
            for attempt in range(1, ATTEMPTS + 1):
                with ctx.socket(zmq.REQ) as sock:
                    sock.linger = 0
                    sock.connect(frontend_at)
                    sock.send(b"request %d" % number)
                    if sock.poll(REPLY_TIMEOUT_MS):
                        replies.append(sock.recv())
                        print(f"client: {replies[-1].decode()}", flush=True)
                        break
                print(f"client: no reply to request {number} (attempt {attempt})", flush=True)
                retried.append(number)
            else:
                raise TimeoutError(f"request {number}: no reply after {ATTEMPTS} attempt(s)")
            on_reply(replies)
    finally:
        ctx.term()
    return replies, retried


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    frontend, backend = free_endpoint(), free_endpoint()
    here = [sys.executable, __file__]
    queue_process = subprocess.Popen(
        [*here, "queue", frontend, backend], stdout=subprocess.PIPE, text=True
    )
    said: Queue[str] = Queue()  # the queue's lines, read on a thread so that waits can end

    def read_lines() -> None:
        for line in queue_process.stdout or ():
            said.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    workers = {name: subprocess.Popen([*here, "worker", backend, "--name", name]) for name in "AB"}
    killed: list[int] = []

    def kill_a_when_it_is_next(replies: list[bytes]) -> None:
        # The workers take turns; just after B answered, A has waited longest and is next.
        if not killed and replies[-1].startswith(b"B did"):
            workers["A"].kill()
            workers["A"].wait()
            killed.append(len(replies))
            print(f"demo: SIGKILL to worker A after {len(replies)} replies", flush=True)

    try:
        ready = 0
        while ready < len(workers):  # both are in the queue's list before the first request
            ready += "is READY" in said.get(timeout=WAIT_MS / 1000)
        replies, retried = client(frontend, REQUESTS, kill_a_when_it_is_next)
    except Empty:
        print(f"FAIL 18_simple_pirate: the workers were not READY within {WAIT_MS} ms")
        return 1
    except TimeoutError as exc:
        print(f"FAIL 18_simple_pirate: {exc}")
        return 1
    finally:
        queue_process.kill()
        queue_process.wait()
        for process in workers.values():
            process.kill()
            process.wait()
    by_b_after = all(r.startswith(b"B did") for r in replies[killed[0] :]) if killed else False
    if len(replies) != REQUESTS or not killed or not retried or not by_b_after:
        print(
            f"FAIL 18_simple_pirate: {len(replies)} of {REQUESTS} answered, "
            f"retried {retried}, A killed after {killed}"
        )
        return 1
    print(
        f"PASS 18_simple_pirate: {REQUESTS} of {REQUESTS} answered; the request the queue gave "
        f"dead worker A (number {retried[0]}) was lost and answered by B on the client's retry"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    q = roles.add_parser("queue")
    q.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:5555")
    q.add_argument("backend", nargs="?", default="tcp://127.0.0.1:5556")
    w = roles.add_parser("worker")
    w.add_argument("backend", nargs="?", default="tcp://127.0.0.1:5556")
    w.add_argument("--name", default="A")
    c = roles.add_parser("client")
    c.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:5555")
    c.add_argument("--requests", type=int, default=REQUESTS)
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "queue":
            queue(args.frontend, args.backend)
        elif args.role == "worker":
            worker(args.backend, args.name)
        elif args.role == "client":
            client(args.frontend, args.requests)
        else:
            return demo()
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
