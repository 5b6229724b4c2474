"""Lesson 22, Titanic: requests kept on disk, so that clients, workers and the broker itself need
never be up at the same time.

zguide: chapter 4, "Disconnected Reliability (Titanic Pattern)".
Terms: Titanic, store and forward, disconnected reliability, at-least-once, fsync, atomic
rename, ticket (the request's id).

What it shows
  * Every broker so far held requests in memory: kill it and they are gone. Titanic writes
    each request to disk before it says "200" and hands the client a ticket (a uuid). From
    then on the request outlives the client, the worker and Titanic itself.
  * The write is made safe in the classic way: to a temporary file, fsync, then an atomic
    rename. A file that exists under its final name is complete.
  * A dispatcher gives stored requests to workers whenever one is there, and stores each
    reply the same way. The client comes back with its ticket when it likes: "300" means not
    done yet, "200" brings the reply, and CLOSE lets Titanic delete both.
  * On start, Titanic reads its folder and sends every request without a reply again. A
    request that was with a worker when Titanic died therefore runs twice: this is
    at-least-once delivery, and a worker whose work must not run twice keeps its own record
    of the tickets it has done.
  * The demo takes requests with no worker running, SIGKILLs Titanic, starts a new one on
    the same folder, and only then a worker: every request is answered.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client REQ -> titanic.front ROUTER: REQUEST body, REPLY ticket, CLOSE ticket
  worker DEALER -> titanic.back ROUTER: READY, [ticket, reply]; [ticket, request] from disk

Try it
  python 22_titanic.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `STORE_ON_DISK = True` -> `STORE_ON_DISK = False`: FAIL, "lost in the restart"
      Kept in memory only, the requests die with the first Titanic.
  * `REQUESTS = 5` -> `REQUESTS = 12`: PASS, "12 of 12 answered"
      However many are waiting, the worker finds them all when it comes.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import zmq

STORE_ON_DISK = True  # False: in memory only (and lost with the process)
REQUESTS = 5
WAIT_MS = 3000
READY = b"READY"


def store(folder: Path, name: str, data: bytes) -> None:
    """Write `name` so that it is either whole or absent: temporary file, fsync, rename."""
    temporary = folder / f".{name}.partial"
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.rename(folder / name)


class Shelf:
    """Requests and replies by ticket: on disk (STORE_ON_DISK) or in memory."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.memory = folder, dict[str, bytes]()

    def put(self, name: str, data: bytes) -> None:
        if STORE_ON_DISK:
            store(self.folder, name, data)
        else:
            self.memory[name] = data

    def get(self, name: str) -> bytes | None:
        if not STORE_ON_DISK:
            return self.memory.get(name)
        path = self.folder / name
        return path.read_bytes() if path.exists() else None

    def drop(self, ticket: str) -> None:
        for name in (f"{ticket}.request", f"{ticket}.reply"):
            self.memory.pop(name, None)
            (self.folder / name).unlink(missing_ok=True)

    def unanswered(self) -> list[str]:
        """Tickets with a request and no reply: what a new Titanic must send again."""
        names = set(self.memory) if not STORE_ON_DISK else {p.name for p in self.folder.iterdir()}
        return sorted(
            n.removesuffix(".request")
            for n in names
            if n.endswith(".request") and n.replace(".request", ".reply") not in names
        )


def titanic(folder: Path, frontend_at: str, backend_at: str) -> None:
    ctx = zmq.Context()
    clients, workers = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    clients.bind(frontend_at)
    workers.bind(backend_at)
    shelf = Shelf(folder)
    waiting = shelf.unanswered()  # a restart: these go out again (at least once)
    idle: list[bytes] = []
    print(f"titanic: up, {len(waiting)} stored requests without a reply", flush=True)
    poller = zmq.Poller()
    poller.register(clients, zmq.POLLIN)
    poller.register(workers, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if clients in ready:
            client, empty, command, *args = clients.recv_multipart()
            if command == b"REQUEST":
                ticket = uuid.uuid4().hex
                shelf.put(f"{ticket}.request", args[0])  # on disk before the client hears 200
                waiting.append(ticket)
                answer = [b"200", ticket.encode()]
            elif command == b"REPLY":
                ticket = args[0].decode()
                reply = shelf.get(f"{ticket}.reply")
                known = reply is not None or shelf.get(f"{ticket}.request") is not None
                answer = [b"200", reply] if reply is not None else [b"300" if known else b"400"]
            else:  # CLOSE
                shelf.drop(args[0].decode())
                answer = [b"200"]
            clients.send_multipart([client, empty, *answer])
        if workers in ready:
            worker, *message = workers.recv_multipart()
            if message != [READY]:
                done, reply = message
                shelf.put(f"{done.decode()}.reply", reply)
            idle.append(worker)
        while idle and waiting:
            ticket = waiting.pop(0)
            request = shelf.get(f"{ticket}.request")
            if request is not None:  # closed meanwhile: nothing to do
                workers.send_multipart([idle.pop(0), ticket.encode(), request])


def worker(backend_at: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(backend_at)
    sock.send(READY)
    while True:
        ticket, request = sock.recv_multipart()
        sock.send_multipart([ticket, b"done: " + request])


def ask(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, *frames: bytes) -> list[bytes]:
    """One request to Titanic, retried on a fresh socket (lesson 11) while it is down."""
    deadline = time.monotonic() + 3 * WAIT_MS / 1000
    while time.monotonic() < deadline:
        with ctx.socket(zmq.REQ) as req:
            req.linger = 0
            req.connect(endpoint)
            req.send_multipart(list(frames))
            if req.poll(WAIT_MS):
                return req.recv_multipart()
    raise TimeoutError(f"Titanic did not answer {frames[0].decode()} in {3 * WAIT_MS} ms")


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    front, back = free_endpoint(), free_endpoint()
    here = [sys.executable, __file__]
    ctx = zmq.Context()
    processes: list[subprocess.Popen[bytes]] = []
    answered: dict[bytes, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="titanic-") as folder:
        try:
            processes.append(subprocess.Popen([*here, "titanic", folder, front, back]))
            tickets = {}
            for n in range(REQUESTS):  # no worker anywhere yet
                status, ticket = ask(ctx, front, b"REQUEST", b"request %d" % n)
                if status != b"200":
                    raise TimeoutError(f"Titanic refused request {n}: {status!r}")
                tickets[ticket] = b"request %d" % n
            print(f"demo: {len(tickets)} requests stored; SIGKILL to Titanic", flush=True)
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait()
            processes.append(subprocess.Popen([*here, "titanic", folder, front, back]))
            processes.append(subprocess.Popen([*here, "worker", back]))
            lost = []
            for ticket, request in tickets.items():
                deadline = time.monotonic() + WAIT_MS / 1000
                while (reply := ask(ctx, front, b"REPLY", ticket))[0] == b"300":
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)  # the client comes back later: that is the pattern
                if reply[0] == b"200":
                    answered[request] = reply[1]
                    ask(ctx, front, b"CLOSE", ticket)
                else:
                    lost.append(request.decode())
            left = sorted(p.name for p in Path(folder).iterdir())
        except TimeoutError as exc:
            print(f"FAIL 22_titanic: {exc}")
            return 1
        finally:
            for process in processes:
                process.kill()
                process.wait()
            ctx.destroy()
    correct = all(reply == b"done: " + request for request, reply in answered.items())
    if lost or not correct or left:
        why = f"{', '.join(lost)} lost in the restart" if lost else f"left on disk: {left}"
        print(f"FAIL 22_titanic: {len(answered)} of {REQUESTS} answered; {why}")
        return 1
    print(
        f"PASS 22_titanic: {REQUESTS} of {REQUESTS} answered, taken while no worker ran and "
        "kept through Titanic's SIGKILL; every ticket closed, nothing left on disk"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    t = roles.add_parser("titanic", help="the store-and-forward broker")
    t.add_argument("folder", type=Path)
    t.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:5555")
    t.add_argument("backend", nargs="?", default="tcp://127.0.0.1:5556")
    roles.add_parser("worker").add_argument("backend", nargs="?", default="tcp://127.0.0.1:5556")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "titanic":
            titanic(args.folder, args.frontend, args.backend)
        elif args.role == "worker":
            worker(args.backend)
        else:
            return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
