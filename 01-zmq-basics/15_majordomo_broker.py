"""Lesson 15, a Majordomo broker: named services, heartbeats both ways, and the work of a dead
worker given to another.

zguide: chapter 4, "Service-Oriented Reliable Queuing (Majordomo Pattern)"; the spec it follows
is rfc.zeromq.org 18/MDP (MDP/0.2), the protocol step 02's coordinator speaks.
Terms: Majordomo, MDP, service, READY, REQUEST, FINAL, HEARTBEAT, DISCONNECT, requeue.

What it shows
  * Lesson 12's queue knew one kind of work. A Majordomo broker keeps a queue per service:
    a worker says READY with a service name, a client asks for a service by name, and the
    broker pairs them, least recently used worker first (lesson 07).
  * Every message starts with a header naming the protocol and the side, b"MDPC02" from
    clients and b"MDPW02" to and from workers, then a one-byte command. The broker reads
    both kinds on one ROUTER socket and tells them apart by that header.
  * Heartbeats go both ways as in lesson 12, but the broker also remembers which request
    each worker holds. When a busy worker falls silent for LIVENESS intervals, the broker
    forgets it and puts its request back at the front of the service's queue: the next
    worker does it, and the client never knows. Lesson 12 needed the client's retry for that.
  * What it leaves to step 02's coordinator: a request may now run twice (the dead worker may
    have done it before dying, or be only frozen), so the coordinator gives each request an
    id and a retry limit; it learns each worker's rhythm instead of a fixed one, adds PARTIAL
    replies, the MMI service, limits and keys. Step 02's page from-lesson-15.md walks from
    this file to its code, one need at a time.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client DEALER -> broker ROUTER: MDPC02, REQUEST, service, body; FINAL back
  worker DEALER -> broker ROUTER: MDPW02, READY / HEARTBEAT / FINAL; REQUEST, HEARTBEAT back

Try it
  python 15_majordomo_broker.py broker
  python 15_majordomo_broker.py worker --name A       (and B; kill one with Ctrl-C)
  python 15_majordomo_broker.py client --requests 10
  python 15_majordomo_broker.py demo                  (two workers, one SIGKILLed mid-request)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `service.requests.appendleft(worker.request)` -> `pass`: FAIL, "never answered"
      A broker that forgets what the dead worker held loses that request: the client would
      need lesson 11's retry to get it done.
  * `REQUESTS, IN_FLIGHT = 12, 2` -> `REQUESTS, IN_FLIGHT = 30, 4`: PASS, "30 of 30 answered"
      More requests waiting than workers: the service's queue holds them until one is free.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import zmq

CLIENT, WORKER = b"MDPC02", b"MDPW02"  # the headers: who speaks, and which version
REQUEST, FINAL = b"\x01", b"\x03"  # client commands (PARTIAL, 0x02, is not used here)
READY, W_REQUEST, W_FINAL, HEARTBEAT, DISCONNECT = b"\x01", b"\x02", b"\x04", b"\x05", b"\x06"
HEARTBEAT_S, LIVENESS = 0.25, 3  # both ways; silent intervals before a peer counts as dead
WORK_S = 0.2  # what a request costs a worker here
REQUESTS, IN_FLIGHT = 12, 2  # the demo's client: requests in all, and at once
WAIT_S = 5.0  # the most a client waits for any reply: longer than a dead worker is noticed in
SERVICE = b"echo"


@dataclass
class Worker:
    address: bytes
    service: bytes
    expiry: float  # silent past this, it is dead
    request: list[bytes] | None = None  # [client, b"", body...] while it holds one


@dataclass
class Service:
    requests: deque[list[bytes]] = field(default_factory=deque)  # waiting: [client, b"", body]
    idle: OrderedDict[bytes, None] = field(default_factory=OrderedDict)  # LRU first


class Broker:
    """One ROUTER for clients and workers alike: the header of each message says which."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.services: dict[bytes, Service] = {}
        self.workers: dict[bytes, Worker] = {}

    def dispatch(self, name: bytes) -> None:
        """Pair the service's waiting requests with its idle workers, longest idle first."""
        service = self.services[name]
        while service.requests and service.idle:
            worker = self.workers[service.idle.popitem(last=False)[0]]
            worker.request = service.requests.popleft()
            self.sock.send_multipart([worker.address, WORKER, W_REQUEST, *worker.request])

    def forget(self, worker: Worker, why: str) -> None:
        service = self.services[worker.service]
        service.idle.pop(worker.address, None)
        del self.workers[worker.address]
        print(f"broker: worker {worker.address!r} {why}", flush=True)
        if worker.request is not None:  # what it held goes first to the next worker
            service.requests.appendleft(worker.request)
            print(f"broker: its {worker.request[2:]!r} goes to another worker", flush=True)
            self.dispatch(worker.service)

    def from_client(self, sender: bytes, command: bytes, rest: list[bytes]) -> None:
        if command == REQUEST and rest:
            name, *body = rest
            self.services.setdefault(name, Service()).requests.append([sender, b"", *body])
            self.dispatch(name)

    def from_worker(self, sender: bytes, command: bytes, rest: list[bytes], now: float) -> None:
        worker = self.workers.get(sender)
        if worker is None:
            if command == READY and rest:
                self.workers[sender] = Worker(sender, rest[0], now + HEARTBEAT_S * LIVENESS)
                self.services.setdefault(rest[0], Service()).idle[sender] = None
                self.dispatch(rest[0])
            else:  # a worker we do not know (we forgot it): it must say READY again
                self.sock.send_multipart([sender, WORKER, DISCONNECT])
            return
        worker.expiry = now + HEARTBEAT_S * LIVENESS  # anything it says: it is alive
        if command == W_FINAL and worker.request is not None and len(rest) >= 2:
            client, _empty, *body = rest
            self.sock.send_multipart([client, CLIENT, FINAL, worker.service, *body])
            worker.request = None
            self.services[worker.service].idle[sender] = None
            self.dispatch(worker.service)
        elif command == DISCONNECT:
            self.forget(worker, "said DISCONNECT")

    def beat(self, now: float) -> None:
        """A heartbeat to every worker, busy or idle (they watch us too); the silent go."""
        for address in self.workers:
            self.sock.send_multipart([address, WORKER, HEARTBEAT])
        for worker in [w for w in self.workers.values() if w.expiry < now]:
            self.forget(worker, f"silent for {LIVENESS} heartbeats: dead")


def broker(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    print(f"broker: on {endpoint}", flush=True)
    state = Broker(sock)
    next_beat = time.monotonic() + HEARTBEAT_S
    while True:
        if sock.poll(int(HEARTBEAT_S * 1000)):
            frames = sock.recv_multipart()
            if len(frames) >= 3:  # [sender, header, command, ...]; anything shorter is noise
                sender, header, command, *rest = frames
                if header == CLIENT:
                    state.from_client(sender, command, rest)
                elif header == WORKER:
                    state.from_worker(sender, command, rest, time.monotonic())
        if time.monotonic() >= next_beat:
            state.beat(time.monotonic())
            next_beat = time.monotonic() + HEARTBEAT_S


def worker(endpoint: str, name: str) -> None:
    """Echo requests for SERVICE; reconnect when the broker falls silent."""
    ctx = zmq.Context()
    while True:  # one connection per pass; a silent broker starts the next
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.routing_id = name.encode()
        sock.connect(endpoint)
        sock.send_multipart([WORKER, READY, SERVICE])
        print(f"{name}: connected to {endpoint}, READY for {SERVICE.decode()}", flush=True)
        heard, next_beat = time.monotonic(), time.monotonic() + HEARTBEAT_S
        while time.monotonic() - heard < HEARTBEAT_S * LIVENESS:
            if sock.poll(int(HEARTBEAT_S * 1000)):
                _header, command, *rest = sock.recv_multipart()
                heard = time.monotonic()
                if command == W_REQUEST:
                    client, empty, *body = rest
                    print(f"{name}: working on {b' '.join(body).decode()}", flush=True)
                    time.sleep(WORK_S)  # stands in for real work (and holds the request)
                    reply = [name.encode() + b" did " + b" ".join(body)]
                    sock.send_multipart([WORKER, W_FINAL, client, empty, *reply])
                elif command == DISCONNECT:
                    break
            if time.monotonic() >= next_beat:
                sock.send_multipart([WORKER, HEARTBEAT])
                next_beat = time.monotonic() + HEARTBEAT_S
        print(f"{name}: the broker went silent or said DISCONNECT; connecting again", flush=True)
        sock.close()


def client(endpoint: str, requests: int, in_flight: int) -> tuple[dict[str, str], int]:
    """Send `requests` to SERVICE, `in_flight` at a time, never again: (each request's reply,
    how many replies came twice). Stops early when no reply came for WAIT_S."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    replies: dict[str, str] = {}
    sent = twice = 0
    try:
        while len(replies) < requests:
            while sent < requests and sent - len(replies) < in_flight:
                sock.send_multipart([CLIENT, REQUEST, SERVICE, b"request %d" % sent])
                sent += 1
            if not sock.poll(int(WAIT_S * 1000)):
                break  # what is still owed is reported by the caller
            _header, _command, _service, reply = sock.recv_multipart()
            body = reply.decode().split(" did ", 1)[1]
            twice += body in replies
            replies.setdefault(body, reply.decode())
    finally:
        sock.close()
        ctx.term()
    return replies, twice


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    endpoint = free_endpoint()
    here = [sys.executable, __file__]
    processes: dict[str, subprocess.Popen[str]] = {
        "broker": subprocess.Popen([*here, "broker", endpoint], text=True)
    }
    connected = {name: threading.Event() for name in ("A", "B")}
    held: list[str] = []  # the request worker A was doing when it was killed

    def watch(name: str, process: subprocess.Popen[str]) -> None:
        """Echo a worker's lines; kill A the moment it starts on a request."""
        for line in process.stdout or ():
            print(line, end="", flush=True)
            if "connected to" in line:
                connected[name].set()
            elif name == "A" and "working on" in line and not held:
                held.append(line.split("working on ", 1)[1].strip())
                print("demo: SIGKILL to worker A, in the middle of it", flush=True)
                process.send_signal(signal.SIGKILL)

    for name in connected:
        processes[name] = subprocess.Popen(
            [*here, "worker", "--name", name, endpoint], stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=watch, args=(name, processes[name]), daemon=True).start()
    try:
        if not all(event.wait(WAIT_S) for event in connected.values()):
            print(f"FAIL 15_majordomo_broker: the workers did not start within {WAIT_S:g} s")
            return 1
        replies, twice = client(endpoint, REQUESTS, IN_FLIGHT)
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
    owed = [f"request {n}" for n in range(REQUESTS) if f"request {n}" not in replies]
    for n in range(REQUESTS):
        print(f"client: request {n} -> {replies.get(f'request {n}', '(nothing)')}")
    problems = [
        *([f"{', '.join(owed)} never answered within {WAIT_S:g} s"] if owed else []),
        *([f"{twice} replies came twice"] if twice else []),
        *(["worker A was never given a request to die with"] if not held else []),
    ]
    if problems:
        print(
            f"FAIL 15_majordomo_broker: {len(replies)} of {REQUESTS} answered; "
            + "; ".join(problems)
        )
        return 1
    print(
        f"PASS 15_majordomo_broker: {REQUESTS} of {REQUESTS} answered, none twice; "
        f"{held[0]}, which A held when it was SIGKILLed, done by {replies[held[0]].split()[0]}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    for role in ("broker", "worker", "client"):
        roles.add_parser(role).add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555")
    roles.choices["worker"].add_argument("--name", default="A")
    roles.choices["client"].add_argument("--requests", type=int, default=REQUESTS)
    roles.add_parser("demo", help="a broker, two workers, a client; worker A killed")
    args = parser.parse_args()
    try:
        if args.role == "broker":
            broker(args.endpoint)
        elif args.role == "worker":
            worker(args.endpoint, args.name)
        elif args.role == "client":
            replies, _ = client(args.endpoint, args.requests, IN_FLIGHT)
            for body, reply in replies.items():
                print(f"{body} -> {reply}")
        else:
            return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
