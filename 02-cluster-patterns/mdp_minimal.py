"""Majordomo on the wire, both versions: the smallest client, worker and broker, written from
the specs, MDP/0.2 (rfc.zeromq.org 18/MDP) and MDP/0.1 (7/MDP).

Read this before the coordinator. It imports nothing but pyzmq, and each message is the list of
frames the specs' tables show, so you can hold them side by side. The two versions name the
same ideas with different codes, and the header frame says which table a message uses:

                     MDP/0.2 (what step 02 speaks)            MDP/0.1 (the zguide's examples)
  client -> broker   MDPC02, 0x01 REQUEST, service, body      "", MDPC01, service, body
  broker -> client   MDPC02, 0x02 PARTIAL | 0x03 FINAL,        "", MDPC01, service, body
                       service, body                            (one reply, no command frame)
  worker -> broker   MDPW02, 0x01 READY, service              "", MDPW01, 0x01 READY, service
                     MDPW02, 0x03 PARTIAL | 0x04 FINAL,        "", MDPW01, 0x03 REPLY,
                       client, "", body                         client, "", body
                     MDPW02, 0x05 HEARTBEAT | 0x06 DISCONNECT  "", MDPW01, 0x04 HEARTBEAT |
                                                                 0x05 DISCONNECT
  broker -> worker   MDPW02, 0x02 REQUEST, client, "", body    "", MDPW01, 0x02 REQUEST,
                                                                 client, "", body
                     HEARTBEAT and DISCONNECT as above         HEARTBEAT and DISCONNECT as above

0x03 is PARTIAL in one and REPLY in the other, 0x04 FINAL and HEARTBEAT, 0x05 HEARTBEAT and
DISCONNECT: a reader that looked at the code without the header would mistake every one.

Every peer here uses a DEALER: the broker's ROUTER adds the peer's address in front of what it
receives (step 01's lesson 06), so none of it appears. MDP/0.1 starts every message with an
empty frame (a REQ socket's habit); MDP/0.2 has none, and `delimited=True` adds it for the
brokers that still require it (majortomo's).

The broker here is the least that serves: one queue of requests and one of idle workers per
service, and the workers it has not heard from for three heartbeats forgotten. Lesson 15
(01-zmq-basics/15_majordomo_broker.py) adds the rest a broker needs, and step 02's
coordinator (coordinator_core.py, coordinator.py) everything a cluster needs. The worker and
client programs (worker.py, client.py) learn the broker's rhythm, reconnect with back-off, run
tasks on a thread so that they can beat while busy, and retry.

  python -m cluster_patterns.mdp_minimal demo                    (both versions, checked)
  python -m cluster_patterns.mdp_minimal broker --mdp 0.1        (one terminal each)
  python -m cluster_patterns.mdp_minimal worker --mdp 0.1 --service echo
  python -m cluster_patterns.mdp_minimal client --mdp 0.1 --service echo hello world
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import zmq


@dataclass(frozen=True)
class Version:
    """One version's headers and command codes (None: the version has no such command)."""

    name: str
    client: bytes
    worker: bytes
    request: bytes | None  # client -> broker (0.1 sends no command frame)
    partial: bytes | None  # broker -> client
    final: bytes | None  # broker -> client (0.1's reply has no command frame)
    ready: bytes
    w_request: bytes
    w_partial: bytes | None
    w_final: bytes  # 0.1 calls it REPLY
    heartbeat: bytes
    disconnect: bytes
    delimited: bool  # whether the spec puts an empty frame first


MDP02 = Version(
    "0.2", b"MDPC02", b"MDPW02", b"\x01", b"\x02", b"\x03",
    b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", delimited=False,
)  # fmt: skip
MDP01 = Version(
    "0.1", b"MDPC01", b"MDPW01", None, None, None,
    b"\x01", b"\x02", None, b"\x03", b"\x04", b"\x05", delimited=True,
)  # fmt: skip
VERSIONS = {v.name: v for v in (MDP02, MDP01)}

# MDP/0.2's names, kept for the tests that speak it frame by frame
CLIENT, WORKER = MDP02.client, MDP02.worker
REQUEST, PARTIAL, FINAL = b"\x01", b"\x02", b"\x03"
READY, W_REQUEST, W_PARTIAL, W_FINAL, HEARTBEAT, DISCONNECT = (
    bytes([code]) for code in range(1, 7)
)
HEARTBEAT_S = 2.5  # the interval both specs suggest
LIVENESS = 3  # silent intervals before a peer is given up
WAIT_MS = 3000


class RawPeer:
    """A DEALER that sends and receives whole MDP messages, with or without the delimiter."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        delimited: bool = False,
        name: bytes = b"",
        version: Version = MDP02,
    ) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if name:
            self.sock.routing_id = name  # the address the broker will know us by
        self.sock.connect(endpoint)
        self.version = version
        self.prefix = [b""] if delimited or version.delimited else []

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart([*self.prefix, *frames])

    def recv(self, timeout_ms: int = WAIT_MS) -> list[bytes]:
        """The next message, its delimiter (if this peer uses one) checked and removed."""
        if not self.sock.poll(timeout_ms):
            raise TimeoutError(f"nothing within {timeout_ms} ms")
        frames = self.sock.recv_multipart()
        if frames[: len(self.prefix)] != self.prefix:
            raise ValueError(f"answered in the other framing: {frames!r}")
        return frames[len(self.prefix) :]

    def recv_skipping_heartbeats(self, timeout_ms: int = WAIT_MS) -> list[bytes]:
        beat = [self.version.worker, self.version.heartbeat]
        while (frames := self.recv(timeout_ms)) == beat:
            pass
        return frames

    def close(self) -> None:
        self.sock.close(linger=0)


class RawClient(RawPeer):
    def request(self, service: bytes, *body: bytes) -> None:
        v = self.version
        self.send(v.client, *([v.request] if v.request else []), service, *body)

    def reply(self, timeout_ms: int = WAIT_MS) -> tuple[bool, bytes, list[bytes]]:
        """(final, service, body) of the next reply; MDP/0.1's one reply is always final."""
        header, *rest = self.recv(timeout_ms)
        if header != self.version.client:
            raise ValueError(f"not an {self.version.client.decode()} reply: {header!r}")
        if self.version.final is None:
            return True, rest[0], rest[1:]
        command, service, *body = rest
        return command == self.version.final, service, body


class RawWorker(RawPeer):
    def ready(self, service: bytes) -> None:
        self.send(self.version.worker, self.version.ready, service)

    def final(self, client: bytes, *body: bytes) -> None:
        self.send(self.version.worker, self.version.w_final, client, b"", *body)

    def heartbeat(self) -> None:
        self.send(self.version.worker, self.version.heartbeat)


def run_worker(endpoint: str, service: bytes, delimited: bool, version: Version = MDP02) -> None:
    """Echo every request until the broker says DISCONNECT or stays silent too long."""
    ctx = zmq.Context()
    worker = RawWorker(ctx, endpoint, delimited, version=version)
    worker.ready(service)
    print(f"worker: READY for {service.decode()} sent to {endpoint}", flush=True)
    last_heard, next_beat = time.monotonic(), time.monotonic() + HEARTBEAT_S
    while time.monotonic() - last_heard < LIVENESS * HEARTBEAT_S:  # silent too long: give up
        try:
            header, command, *rest = worker.recv(int(HEARTBEAT_S * 1000))
        except TimeoutError:
            header, command, rest = version.worker, b"", []
        else:
            last_heard = time.monotonic()
        if header != version.worker:
            print(f"worker: not an {version.worker.decode()} message: {header!r}", flush=True)
        elif command == version.w_request:
            client, _empty, *body = rest
            print(f"worker: request {body!r}", flush=True)
            worker.final(client, *body)  # echo
        elif command == version.disconnect:
            break
        if time.monotonic() >= next_beat:
            worker.heartbeat()
            next_beat = time.monotonic() + HEARTBEAT_S
    print("worker: the broker said DISCONNECT or went silent", flush=True)
    worker.close()
    ctx.term()


def run_client(
    endpoint: str, service: bytes, body: list[bytes], delimited: bool, version: Version = MDP02
) -> list[bytes]:
    ctx = zmq.Context()
    client = RawClient(ctx, endpoint, delimited, version=version)
    client.request(service, *body)
    try:
        while True:  # PARTIALs until the FINAL
            final, _service, reply = client.reply(10_000)
            if final:
                return reply
            print(f"client: partial {reply!r}")
    finally:
        client.close()
        ctx.term()


class MinimalBroker:
    """One version's broker state on one ROUTER: a queue of requests and one of idle workers
    per service, longest idle first."""

    def __init__(self, sock: zmq.Socket[bytes], version: Version) -> None:
        self.sock, self.v = sock, version
        self.prefix = [b""] if version.delimited else []
        self.requests: dict[bytes, deque[list[bytes]]] = {}  # service -> [client, body...]
        self.idle: dict[bytes, OrderedDict[bytes, None]] = {}  # service -> idle workers
        self.heard: dict[bytes, tuple[bytes, float]] = {}  # worker -> (service, last heard)

    def to(self, peer: bytes, *frames: bytes) -> None:
        self.sock.send_multipart([peer, *self.prefix, *frames])

    def dispatch(self, service: bytes) -> None:
        while self.requests.get(service) and self.idle.get(service):
            worker, _ = self.idle[service].popitem(last=False)
            client, *body = self.requests[service].popleft()
            self.to(worker, self.v.worker, self.v.w_request, client, b"", *body)

    def on_message(self, sender: bytes, frames: list[bytes], now: float) -> None:
        header, *rest = frames[len(self.prefix) :] or [b""]
        if header == self.v.client and self.v.request is not None:  # 0.2's command frame
            rest = rest[1:] if rest[:1] == [self.v.request] else []
        if header == self.v.client and rest:
            self.requests.setdefault(rest[0], deque()).append([sender, *rest[1:]])
            self.dispatch(rest[0])
        elif header == self.v.worker and rest:
            self.on_worker(sender, rest[0], rest[1:], now)

    def on_worker(self, sender: bytes, command: bytes, args: list[bytes], now: float) -> None:
        if command == self.v.ready and args:
            self.heard[sender] = (args[0], now)
        elif sender not in self.heard:
            return  # not READY, and unknown: nothing to do for it
        service = self.heard[sender][0]
        self.heard[sender] = (service, now)
        if command == self.v.w_final and len(args) >= 2:
            client, _empty, *body = args
            final = [self.v.final] if self.v.final is not None else []  # 0.1: no command
            self.to(client, self.v.client, *final, service, *body)
        if command == self.v.disconnect:
            del self.heard[sender]
        elif command in (self.v.ready, self.v.w_final):
            self.idle.setdefault(service, OrderedDict())[sender] = None
            self.dispatch(service)

    def beat(self, now: float) -> None:
        """Forget the workers silent too long (what one held is lost: lesson 15 requeues it),
        and send the rest a heartbeat."""
        for worker, (service, last) in list(self.heard.items()):
            if now - last > LIVENESS * HEARTBEAT_S:
                del self.heard[worker]
                self.idle.get(service, OrderedDict()).pop(worker, None)
        for worker in self.heard:
            self.to(worker, self.v.worker, self.v.heartbeat)


def run_broker(endpoint: str, version: Version, stop: threading.Event | None = None) -> None:
    """Serve one version's clients and workers on one ROUTER until `stop` is set."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(endpoint)
    broker = MinimalBroker(sock, version)
    next_beat = time.monotonic() + HEARTBEAT_S
    while stop is None or not stop.is_set():
        if sock.poll(int(HEARTBEAT_S * 1000 / 2)):
            sender, *frames = sock.recv_multipart()
            broker.on_message(sender, frames, time.monotonic())
        if time.monotonic() >= next_beat:
            broker.beat(time.monotonic())
            next_beat = time.monotonic() + HEARTBEAT_S
    for worker in broker.heard:  # stopping: the workers are told, rather than left to time out
        broker.to(worker, version.worker, version.disconnect)
    sock.close()
    ctx.term()


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    """Each version's broker, worker and client on threads: the client's words come back."""
    outcomes = []
    for version in (MDP02, MDP01):
        endpoint, stop = free_endpoint(), threading.Event()
        threads = [
            threading.Thread(target=run_broker, args=(endpoint, version, stop)),
            threading.Thread(target=run_worker, args=(endpoint, b"echo", False, version)),
        ]  # the worker ends on the DISCONNECT the broker sends when it stops
        for thread in threads:
            thread.start()
        try:
            reply = run_client(
                endpoint, b"echo", [b"hello", b"MDP", version.name.encode()], False, version
            )
        except TimeoutError as exc:
            reply = [str(exc).encode()]
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=LIVENESS * HEARTBEAT_S + 5)
        print(
            f"MDP/{version.name}: sent [b'hello', b'MDP', {version.name.encode()!r}], got {reply}"
        )
        outcomes.append(reply == [b"hello", b"MDP", version.name.encode()])
    ok = all(outcomes)
    print(
        f"{'PASS' if ok else 'FAIL'} mdp_minimal: "
        f"{sum(outcomes)} of 2 versions echoed through their broker"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=["worker", "client", "broker", "demo"])
    parser.add_argument("body", nargs="*", help="the client's request frames")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--service", default="echo")
    parser.add_argument("--mdp", choices=sorted(VERSIONS), default="0.2", help="the version")
    parser.add_argument("--delimited", action="store_true", help="lead with an empty frame")
    args = parser.parse_intermixed_args()  # the body may follow the options
    version = VERSIONS[args.mdp]
    try:
        if args.role == "demo":
            return demo()
        if args.role == "broker":
            print(f"broker: MDP/{version.name} on {args.endpoint}", flush=True)
            run_broker(args.endpoint, version)
        elif args.role == "worker":
            run_worker(args.endpoint, args.service.encode(), args.delimited, version)
        else:
            body = [frame.encode() for frame in args.body]
            print(run_client(args.endpoint, args.service.encode(), body, args.delimited, version))
    except (zmq.ZMQError, TimeoutError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
