"""Majordomo (MDP/0.2, RFC 18) on the wire: the smallest client and worker, written from the spec.

Read this before the coordinator. It imports nothing but pyzmq, and each message is the list
of frames the spec's tables show, so you can hold the two side by side:

  client -> broker   MDPC02, 0x01 REQUEST, service, body...
  broker -> client   MDPC02, 0x02 PARTIAL or 0x03 FINAL, service, body...
  worker -> broker   MDPW02, 0x01 READY, service
                     MDPW02, 0x03 PARTIAL or 0x04 FINAL, client address, empty, body...
                     MDPW02, 0x05 HEARTBEAT
                     MDPW02, 0x06 DISCONNECT
  broker -> worker   MDPW02, 0x02 REQUEST, client address, empty, body...
                     MDPW02, 0x05 HEARTBEAT
                     MDPW02, 0x06 DISCONNECT

Both peers use DEALER sockets: the broker's ROUTER adds our address in front of what we send
(lesson 06 of step 01), so none of it appears here. `delimited=True` puts an empty frame
first, the MDP/0.1 habit that some brokers (majortomo's) still require.

What the full programs add (worker.py, client.py): the worker learns the broker's heartbeat
rhythm and reconnects with back-off (step 01's lesson 12 did it with a fixed rhythm), runs
tasks on a thread so it can beat while busy; the client retries and keeps many requests in
flight. The broker's rules are in coordinator_core.py, its sockets in coordinator.py.

  zcl-coordinator --insecure                                       (in one terminal)
  python -m cluster_patterns.mdp_minimal worker --service echo     (in a second)
  python -m cluster_patterns.mdp_minimal client --service echo hello world
"""

from __future__ import annotations

import argparse
import sys
import time

import zmq

CLIENT, WORKER = b"MDPC02", b"MDPW02"
REQUEST, PARTIAL, FINAL = b"\x01", b"\x02", b"\x03"  # client commands
READY, W_REQUEST, W_PARTIAL, W_FINAL, HEARTBEAT, DISCONNECT = (
    bytes([code])
    for code in range(1, 7)  # worker commands
)
HEARTBEAT_S = 2.5  # the interval the spec suggests
WAIT_MS = 3000


class RawPeer:
    """A DEALER that sends and receives whole MDP messages, with or without the delimiter."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        delimited: bool = False,
        name: bytes = b"",
    ) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if name:
            self.sock.routing_id = name  # the address the broker will know us by
        self.sock.connect(endpoint)
        self.prefix = [b""] if delimited else []

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
        while (frames := self.recv(timeout_ms)) == [WORKER, HEARTBEAT]:
            pass
        return frames

    def close(self) -> None:
        self.sock.close(linger=0)


class RawClient(RawPeer):
    def request(self, service: bytes, *body: bytes) -> None:
        self.send(CLIENT, REQUEST, service, *body)


class RawWorker(RawPeer):
    def ready(self, service: bytes) -> None:
        self.send(WORKER, READY, service)

    def final(self, client: bytes, *body: bytes) -> None:
        self.send(WORKER, W_FINAL, client, b"", *body)

    def heartbeat(self) -> None:
        self.send(WORKER, HEARTBEAT)


def run_worker(endpoint: str, service: bytes, delimited: bool) -> None:
    """Echo every request until the broker says DISCONNECT or stays silent too long."""
    ctx = zmq.Context()
    worker = RawWorker(ctx, endpoint, delimited)
    worker.ready(service)
    print(f"worker: READY for {service.decode()} sent to {endpoint}", flush=True)
    last_heard, next_beat = time.monotonic(), time.monotonic() + HEARTBEAT_S
    while time.monotonic() - last_heard < 3 * HEARTBEAT_S:  # three silent beats: give up
        try:
            header, command, *rest = worker.recv(int(HEARTBEAT_S * 1000))
        except TimeoutError:
            header, command, rest = WORKER, b"", []
        else:
            last_heard = time.monotonic()
        if header != WORKER:
            print(f"worker: not an MDP worker message: {header!r}", flush=True)
        elif command == W_REQUEST:
            client, _empty, *body = rest
            print(f"worker: request {body!r}", flush=True)
            worker.final(client, *body)  # echo
        elif command == DISCONNECT:
            break
        if time.monotonic() >= next_beat:
            worker.heartbeat()
            next_beat = time.monotonic() + HEARTBEAT_S
    print("worker: the broker said DISCONNECT or went silent", flush=True)
    worker.close()
    ctx.term()


def run_client(endpoint: str, service: bytes, body: list[bytes], delimited: bool) -> list[bytes]:
    ctx = zmq.Context()
    client = RawClient(ctx, endpoint, delimited)
    client.request(service, *body)
    try:
        while True:  # PARTIALs until the FINAL
            header, command, _service, *reply = client.recv(10_000)
            if header == CLIENT and command == FINAL:
                return reply
            print(f"client: partial {reply!r}")
    finally:
        client.close()
        ctx.term()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=["worker", "client"])
    parser.add_argument("body", nargs="*", help="the client's request frames")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--service", default="echo")
    parser.add_argument("--delimited", action="store_true", help="lead with an empty frame")
    args = parser.parse_intermixed_args()  # the body may follow the options
    try:
        if args.role == "worker":
            run_worker(args.endpoint, args.service.encode(), args.delimited)
        else:
            body = [frame.encode() for frame in args.body]
            print(run_client(args.endpoint, args.service.encode(), body, args.delimited))
    except (zmq.ZMQError, TimeoutError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
