"""Lesson 21, Clone: a shared key-value state, a snapshot to join with, updates to follow, and no
update missed or applied twice across a reconnect.

zguide: chapter 5, "Reliable Pub-Sub (Clone Pattern)", models one to three (snapshot, then
updates), and "Last Value Caching".
Terms: Clone, snapshot, update, sequence number, last value cache, state transfer.

What it shows
  * A server holds a map and changes it, publishing each change on PUB as [key, sequence,
    value]. A subscriber that joins late has missed the changes before it (lesson 05's slow
    joiner, and simply everything before it was born).
  * So it asks for a snapshot on another socket (ROUTER): "ICANHAZ?", and the server sends
    every key with its value, then "KTHXBAI" with the sequence number the snapshot holds.
  * The order is what makes it exact: subscribe first, wait until one update has arrived
    (now the subscription is in place: nothing later can be missed), then ask for the
    snapshot. Updates that arrived before or during the snapshot and that it already holds
    (sequence not above its number) are dropped; every later one must come in sequence, and
    a number skipped is an update missed, which the client says.
  * A reconnect is the same join again: new sockets, a new snapshot, and the same rule.
  * A last value cache is this with the map kept by a proxy between publisher and
    subscribers instead of the publisher itself; step 02's monitor gets a coordinator's
    state the same way (a stats snapshot, then events).

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client SUB -> server PUB: [key, sequence, value], each change
  client DEALER -> server.snapshots ROUTER: ICANHAZ?; [key, value] each, KTHXBAI, sequence

Try it
  python 21_clone.py server
  python 21_clone.py demo     (a client joins mid-stream, reconnects mid-stream, and ends with
                               the server's map, every update applied once, in order)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `SNAPSHOT = True` -> `SNAPSHOT = False`: FAIL, "missed"
      Without the snapshot the client has none of the changes before it joined: the first
      update it sees is not the one after what it holds.
  * `UPDATES, KEYS = 600, 1000` -> `UPDATES, KEYS = 900, 10`: PASS, "900 updates"
      Many updates to few keys: the snapshot is small, and the rule the same.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from queue import Empty, Queue

import zmq

UPDATES, KEYS = 600, 1000  # changes the server makes, and the keys they fall on
UPDATE_EVERY_S = 0.002
SNAPSHOT = True  # join with a snapshot (the pattern), or with updates alone
JOIN_AT, RECONNECT_AT = 100, 350  # the client joins, and reconnects, around these sequences
WAIT_MS = 3000
State = dict[bytes, bytes]


def key_of(seq: int) -> bytes:
    return b"key-%d" % (seq * 7 % KEYS)  # spread over the keys, the same for both sides


def server(snapshots_at: str, updates_at: str) -> None:
    """Change the map UPDATES times, publishing each change; serve snapshots throughout."""
    ctx = zmq.Context()
    snapshots, updates = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
    snapshots.bind(snapshots_at)
    updates.bind(updates_at)
    print("server: ready", flush=True)
    state: State = {}
    seq, next_update = 0, time.monotonic()
    while True:
        wait_ms = max(0, int((next_update - time.monotonic()) * 1000)) if seq < UPDATES else -1
        if snapshots.poll(wait_ms):
            client, _request = snapshots.recv_multipart()  # b"ICANHAZ?"
            for key, value in state.items():
                snapshots.send_multipart([client, key, value])
            snapshots.send_multipart([client, b"KTHXBAI", b"%d" % seq])
        if seq < UPDATES and time.monotonic() >= next_update:
            seq += 1
            state[key_of(seq)] = b"value %d" % seq
            updates.send_multipart([key_of(seq), b"%d" % seq, state[key_of(seq)]])
            next_update += UPDATE_EVERY_S


class Client:
    """Joins with a subscription and a snapshot, then follows the updates in sequence."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], snapshots_at: str, updates_at: str):
        self.ctx, self.snapshots_at, self.updates_at = ctx, snapshots_at, updates_at
        self.state: State = {}
        self.applied = 0  # the sequence number the state holds
        self.missed: list[int] = []  # sequence numbers that never came
        self.dropped = 0  # updates the snapshot already held, not applied again
        self.sub = self.join()

    def join(self) -> zmq.Socket[bytes]:
        sub = self.ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.connect(self.updates_at)
        sub.subscribe(b"")
        if not sub.poll(WAIT_MS):  # one update in hand: the subscription is in place
            raise TimeoutError(f"no update within {WAIT_MS} ms of subscribing")
        if SNAPSHOT:
            self.state, self.applied = self.snapshot()
        return sub

    def snapshot(self) -> tuple[State, int]:
        with self.ctx.socket(zmq.DEALER) as dealer:
            dealer.linger = 0
            dealer.connect(self.snapshots_at)
            dealer.send(b"ICANHAZ?")
            state: State = {}
            while dealer.poll(WAIT_MS):
                key, value = dealer.recv_multipart()
                if key == b"KTHXBAI":
                    return state, int(value)
                state[key] = value
        raise TimeoutError(f"the snapshot did not end within {WAIT_MS} ms")

    def follow(self, until: int) -> None:
        """Apply updates until the state holds sequence `until` (or WAIT_MS of silence)."""
        while self.applied < until and self.sub.poll(WAIT_MS):
            key, seq_frame, value = self.sub.recv_multipart()
            seq = int(seq_frame)
            if seq <= self.applied:
                self.dropped += 1  # the snapshot holds it already
                continue
            if seq != self.applied + 1:  # a gap: these never came
                self.missed.extend(range(self.applied + 1, seq))
            self.state[key] = value
            self.applied = seq

    def reconnect(self) -> None:
        self.sub.close()
        self.sub = self.join()


def wait_for_sequence(ctx: zmq.Context[zmq.Socket[bytes]], updates_at: str, seq: int) -> None:
    """Watch the updates (on a socket of its own) until the server has passed `seq`."""
    with ctx.socket(zmq.SUB) as watch:
        watch.linger = 0
        watch.connect(updates_at)
        watch.subscribe(b"")
        while watch.poll(WAIT_MS):
            if int(watch.recv_multipart()[1]) >= seq:
                return
    raise TimeoutError(f"the server did not reach update {seq}")


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def demo() -> int:
    snapshots_at, updates_at = free_endpoint(), free_endpoint()
    process = subprocess.Popen(
        [sys.executable, __file__, "server", snapshots_at, updates_at],
        stdout=subprocess.PIPE,
        text=True,
    )
    said: Queue[str] = Queue()
    threading.Thread(target=lambda: said.put(process.stdout.readline() if process.stdout else ""),
                     daemon=True).start()  # fmt: skip
    ctx = zmq.Context()
    try:
        said.get(timeout=WAIT_MS / 1000)
        wait_for_sequence(ctx, updates_at, JOIN_AT)  # join mid-stream, not before the stream
        client = Client(ctx, snapshots_at, updates_at)
        joined_at = client.applied
        client.follow(RECONNECT_AT)
        client.reconnect()  # mid-stream again: a new subscription, a new snapshot
        rejoined_at = client.applied
        client.follow(UPDATES)
        client.sub.close()
        final, final_seq = client.snapshot()  # the server's map once it stopped changing
    except (TimeoutError, Empty) as exc:
        print(f"FAIL 21_clone: {exc or 'the server did not start'}")
        return 1
    finally:
        ctx.destroy()
        process.kill()
        process.wait()
    print(
        f"joined holding sequence {joined_at}, reconnected holding {rejoined_at}, "
        f"ended at {client.applied} of {UPDATES} updates; {len(client.state)} keys; "
        f"{client.dropped} updates the snapshots already held dropped"
    )
    problems = []
    if client.missed:
        problems.append(f"{len(client.missed)} updates missed (first {client.missed[0]})")
    if client.applied != final_seq or client.state != final:
        problems.append("the client's map is not the server's")
    if problems:
        print("FAIL 21_clone: " + "; ".join(problems))
        return 1
    print(
        f"PASS 21_clone: {UPDATES} updates, none missed, none applied twice across a join and "
        "a reconnect; the client's map is the server's"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    srv = roles.add_parser("server")
    srv.add_argument("snapshots", nargs="?", default="tcp://127.0.0.1:5556")
    srv.add_argument("updates", nargs="?", default="tcp://127.0.0.1:5557")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "server":
            server(args.snapshots, args.updates)
            return 0
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
