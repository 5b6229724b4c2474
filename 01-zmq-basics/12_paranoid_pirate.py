"""Lesson 12, Paranoid Pirate: a queue and workers that watch each other with heartbeats.

zguide: chapter 4, "Robust Reliable Queuing (Paranoid Pirate Pattern)" and "Heartbeating".
Terms: heartbeat, liveness, expiry, back-off, reconnect, Paranoid Pirate.

What it shows
  * Lesson 11's client survives a dead server, but a broker between them (lesson 07) would
    keep sending work to a dead worker, and a worker behind a dead broker would wait for ever.
    Paranoid Pirate adds heartbeats both ways between the queue and its workers.
  * Fixed rhythm: each side sends a heartbeat every HEARTBEAT_S while idle and counts a peer
    dead after LIVENESS silent intervals. The queue forgets a dead worker (never sends it
    work again); a worker that stops hearing the queue closes its socket, waits, and
    connects a new one, saying READY again. The wait is the back-off: BACKOFF_S, doubling
    after each reconnect that found no queue, up to BACKOFF_MAX_S (0.25 s, 0.5 s, 1 s, 2 s,
    2 s, ...), and back to BACKOFF_S once the queue answers, so a worker does not hammer a
    queue that is slow to come back. (It is the same for every worker; step 02's Backoff
    also randomises each wait, so that a crowd of workers does not come back in step.)
  * Any message from a worker (READY, a heartbeat, a reply) means it is alive and idle.
  * What it leaves to step 02: a request a worker was doing when it died is not redone by
    the queue (the client's retry covers it), and a fixed rhythm cannot tell a slow peer from
    a dead one; step 02's Majordomo protocol names services and learns each peer's rhythm.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> queue.front ROUTER: [client, "", request]
  worker DEALER -> queue.back ROUTER: READY, HEARTBEAT both ways, [client, "", reply]

Try it
  python 12_paranoid_pirate.py queue
  python 12_paranoid_pirate.py worker --name w1      (and w2; kill one, freeze one with Ctrl-Z)
  python 12_paranoid_pirate.py demo                  (kills and freezes each, and recovers)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `HEARTBEAT_S = 0.25  # both ways` -> `HEARTBEAT_S = 1.0  # both ways`: PASS,
    "10 of 10 answered"
      A slower rhythm: dead peers are found in LIVENESS seconds instead of 0.75, so the
      client waits longer, and still every request is answered (ATTEMPTS x REPLY_TIMEOUT_MS
      outlasts the detection).
  * `REPLY_TIMEOUT_MS, ATTEMPTS = 1500, 5` -> `REPLY_TIMEOUT_MS, ATTEMPTS = 1500, 1`: FAIL,
    "unanswered after 1 attempt"
      Heartbeats let the queue and the workers recover; the request a fault swallowed
      needs the client's retry (lesson 11) all the same.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

import zmq

HEARTBEAT_S = 0.25  # both ways, while idle
LIVENESS = 3  # silent intervals before a peer counts as dead
BACKOFF_S, BACKOFF_MAX_S = 0.25, 2.0  # a worker's wait before reconnecting, doubling
READY, HEARTBEAT = b"\x01", b"\x02"  # the two signals; anything else is a request or a reply
REPLY_TIMEOUT_MS, ATTEMPTS = 1500, 5  # the client's Lazy Pirate settings
REQUESTS = 10  # the demo's, with a fault before every second one from the third on
FRONTEND, BACKEND = "tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"
Socket = zmq.Socket[bytes]


def queue(frontend_at: str, backend_at: str) -> None:
    ctx = zmq.Context()
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    frontend.bind(frontend_at)  # clients
    backend.bind(backend_at)  # workers
    print(f"queue: clients on {frontend_at}, workers on {backend_at}", flush=True)
    idle: OrderedDict[bytes, float] = OrderedDict()  # worker -> expiry, longest idle first
    poll_workers, poll_both = zmq.Poller(), zmq.Poller()
    poll_workers.register(backend, zmq.POLLIN)
    poll_both.register(backend, zmq.POLLIN)
    poll_both.register(frontend, zmq.POLLIN)
    heartbeat_at = time.monotonic() + HEARTBEAT_S
    while True:
        # No idle worker: leave requests waiting in the frontend's queue.
        ready = dict((poll_both if idle else poll_workers).poll(int(HEARTBEAT_S * 1000)))
        if backend in ready:
            worker, *message = backend.recv_multipart()
            idle.pop(worker, None)
            idle[worker] = time.monotonic() + HEARTBEAT_S * LIVENESS  # alive, idle, at the back
            if message not in ([READY], [HEARTBEAT]):
                frontend.send_multipart(message)  # a reply: [client, b"", body]
        if frontend in ready:
            request = frontend.recv_multipart()  # [client, b"", body]
            worker, _ = idle.popitem(last=False)
            backend.send_multipart([worker, *request])
        now = time.monotonic()
        if now >= heartbeat_at:
            for worker in idle:
                backend.send_multipart([worker, HEARTBEAT])
            heartbeat_at = now + HEARTBEAT_S
        for worker in [w for w, expiry in idle.items() if expiry < now]:
            print(f"queue: worker {worker.hex()} silent {LIVENESS} beats, forgotten", flush=True)
            del idle[worker]


def connect_worker(ctx: zmq.Context[Socket], backend_at: str) -> Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(backend_at)
    sock.send(READY)
    return sock


def next_backoff(backoff_s: float) -> float:
    """The wait before the reconnect after this one: double, up to BACKOFF_MAX_S."""
    return min(backoff_s * 2, BACKOFF_MAX_S)


def worker(backend_at: str, name: str) -> None:
    ctx = zmq.Context()
    sock = connect_worker(ctx, backend_at)
    liveness, backoff_s = LIVENESS, BACKOFF_S
    heartbeat_at = time.monotonic() + HEARTBEAT_S
    print(f"{name}: ready", flush=True)
    while True:
        if sock.poll(int(HEARTBEAT_S * 1000)):
            message = sock.recv_multipart()
            liveness, backoff_s = LIVENESS, BACKOFF_S  # the queue is there
            if len(message) == 3:  # [client, b"", body]: a request
                client, empty, body = message
                sock.send_multipart([client, empty, name.encode() + b" did " + body])
            elif message != [HEARTBEAT]:
                print(f"{name}: invalid message {message!r}", flush=True)
        else:
            liveness -= 1
            if liveness == 0:
                print(f"{name}: queue silent, reconnecting in {backoff_s:.2f} s", flush=True)
                time.sleep(backoff_s)  # the back-off itself, not a synchronisation
                backoff_s = next_backoff(backoff_s)
                sock.close()
                sock = connect_worker(ctx, backend_at)
                liveness = LIVENESS
        if time.monotonic() >= heartbeat_at:
            sock.send(HEARTBEAT)
            heartbeat_at = time.monotonic() + HEARTBEAT_S


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


class Cluster:
    """The demo's queue and workers as child processes running this file."""

    def __init__(self) -> None:
        self.frontend, self.backend = free_endpoint(), free_endpoint()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.start("queue", "queue", self.frontend, self.backend)
        self.start("A", "worker", self.backend, "--name", "A")
        self.start("B", "worker", self.backend, "--name", "B")

    def start(self, name: str, *args: str) -> None:
        self.processes[name] = subprocess.Popen([sys.executable, __file__, *args])

    def signal(self, name: str, sig: signal.Signals) -> None:
        print(f"demo: {sig.name} to {name}", flush=True)
        self.processes[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.processes[name].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


def demo() -> int:
    cluster = Cluster()
    # Before request N: what to break, and what to mend at the client's first retry.
    faults: dict[int, tuple[str, Callable[[], None], Callable[[], None]]] = {
        2: ("kill worker A", lambda: cluster.signal("A", signal.SIGKILL), lambda: None),
        4: (
            "freeze worker B",
            lambda: cluster.signal("B", signal.SIGSTOP),
            lambda: cluster.signal("B", signal.SIGCONT),
        ),
        6: (
            "freeze the queue",
            lambda: cluster.signal("queue", signal.SIGSTOP),
            lambda: cluster.signal("queue", signal.SIGCONT),
        ),
        8: (
            "kill the queue",
            lambda: cluster.signal("queue", signal.SIGKILL),
            lambda: cluster.start("queue", "queue", cluster.frontend, cluster.backend),
        ),
    }
    ctx = zmq.Context()
    ctx.linger = 0
    answered, retries, unanswered = 0, 0, []
    mend: Callable[[], None] | None = None
    try:
        for number in range(REQUESTS):
            if number in faults:
                if mend is not None:  # the last fault cost no retry: mend it before the next
                    mend()
                what, breaking, mend = faults[number]
                print(f"demo: {what} before request {number}", flush=True)
                breaking()
            body = b"request %d" % number
            for attempt in range(ATTEMPTS):  # Lazy Pirate, as in lesson 11
                with ctx.socket(zmq.REQ) as client:
                    client.connect(cluster.frontend)
                    client.send(body)
                    if client.poll(REPLY_TIMEOUT_MS):
                        reply = client.recv()
                        answered += reply.endswith(b" did " + body)
                        print(f"client: {reply.decode()}", flush=True)
                        break
                retries += 1
                print(f"client: no reply to {body.decode()}, retrying", flush=True)
                if attempt == 0 and mend is not None:
                    mend()
                    mend = None
            else:
                unanswered.append(number)
    finally:
        cluster.stop()
        ctx.term()
    ok = answered == REQUESTS
    print(
        f"{'PASS' if ok else 'FAIL'} 12_paranoid_pirate: {answered} of {REQUESTS} answered "
        f"through {len(faults)} faults (workers and queue killed and frozen), {retries} retries"
        + (
            f"; request {', '.join(map(str, unanswered))} unanswered after {ATTEMPTS} attempt(s)"
            if unanswered
            else ""
        )
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    q = roles.add_parser("queue")
    q.add_argument("frontend", nargs="?", default=FRONTEND)
    q.add_argument("backend", nargs="?", default=BACKEND)
    w = roles.add_parser("worker")
    w.add_argument("backend", nargs="?", default=BACKEND)
    w.add_argument("--name", default="worker")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "queue":
            queue(args.frontend, args.backend)
        elif args.role == "worker":
            worker(args.backend, args.name)
        else:
            return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
