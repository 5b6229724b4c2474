"""Lesson 24, zero-copy and ipc: large messages without copying them, and the transport between
processes on one host.

zguide: chapter 2, "Zero-Copy" and "Unicast Transports"; pyzmq's documentation, "Performance
with pyzmq: copy=False and MessageTracker"; zmq_ipc(7).
Terms: zero-copy, copy=False, Frame, memoryview, MessageTracker, COPY_THRESHOLD, ipc://.

What it shows
  * send(data, copy=False) hands libzmq a reference to your buffer instead of a copy. The
    buffer must then stay unchanged until libzmq is done with it: track=True returns a
    MessageTracker whose `done` says when. Over inproc the very same memory reaches the
    receiver, so the tracker is done only once the receiver has let go of the message.
  * recv(copy=False) returns a Frame: `frame.buffer` is a memoryview of the message, no copy;
    `frame.bytes` makes one.
  * Below zmq.COPY_THRESHOLD (64 kB) pyzmq copies anyway, because a copy is cheaper than the
    bookkeeping: the tracker comes back already done.
  * ipc:// is a Unix domain socket: a file in the filesystem, file permissions as its access
    control (the folder's too), and no TCP stack in the way. It joins processes on one host,
    such as an agent and the helpers it starts. libzmq 4.3 leaves the file behind when the
    socket closes, and the next bind to that path replaces it: keep it in a folder of your
    own (here a temporary one, removed at the end).
  * The timings printed are this machine's, for a feel of the sizes; the verdict rests on
    the facts above, not on them.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  sender PAIR -> receiver PAIR: 32 MB over inproc, lent (copy=False) not copied
  client REQ -> server REP: small round trips over ipc:// (a file) and tcp://

Try it
  python 24_zero_copy_ipc.py demo

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `SIZE = 32 * 2**20` -> `SIZE = 1024`: PASS, "copied anyway below COPY_THRESHOLD"
      A small message is copied whatever you ask: the tracker is done at once.
  * `del frame  # the last reference: now libzmq may free the message` -> `pass`: FAIL,
    "still held"
      The receiver keeps the Frame, and with it the sender's memory: the tracker never says
      done, and the sender must not touch its buffer.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

import zmq

SIZE = 32 * 2**20  # bytes in the large message
ROUND_TRIPS = 2000  # small messages each way, for the transports' timing
WAIT_MS = 3000


def zero_copy(ctx: zmq.Context[zmq.Socket[bytes]]) -> dict[str, object]:
    """Send SIZE bytes without a copy over inproc; what the tracker and the Frame say."""
    with ctx.socket(zmq.PAIR) as sender, ctx.socket(zmq.PAIR) as receiver:
        receiver.bind("inproc://zero-copy")
        sender.connect("inproc://zero-copy")
        payload = bytearray(SIZE)  # a buffer we own and must not change while it is lent
        started = time.perf_counter()
        tracker = sender.send(payload, copy=False, track=True)
        done_before_recv = tracker.done
        if not receiver.poll(WAIT_MS):
            raise TimeoutError(f"nothing arrived within {WAIT_MS} ms")
        frame = receiver.recv(copy=False)
        took_ms = (time.perf_counter() - started) * 1000
        seen = {"buffer": type(frame.buffer).__name__, "length": len(frame.buffer)}
        done_while_held = tracker.done
        del frame  # the last reference: now libzmq may free the message
        try:
            tracker.wait(WAIT_MS / 1000)
            released = True
        except zmq.NotDone:
            released = False
        copied_started = time.perf_counter()
        sender.send(bytes(payload))  # the ordinary way: a copy into libzmq
        receiver.recv()  # and one out
        copied_ms = (time.perf_counter() - copied_started) * 1000
    return {
        **seen,
        "done_before_recv": done_before_recv,
        "done_while_held": done_while_held,
        "released": released,
        "zero_copy_ms": took_ms,
        "copied_ms": copied_ms,
    }


def round_trips(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> tuple[float, str]:
    """(round trips per second of a small message, the endpoint bound), by a new server
    socket each time (so a second ipc bind meets the file the first one left)."""
    with ctx.socket(zmq.REP) as server, ctx.socket(zmq.REQ) as client:
        server.bind(endpoint)
        bound = server.getsockopt_string(zmq.LAST_ENDPOINT)
        client.connect(bound)
        started = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            client.send(b"x")
            if not server.poll(WAIT_MS):
                raise TimeoutError(f"no request over {bound} within {WAIT_MS} ms")
            server.send(server.recv())
            client.recv()
        return ROUND_TRIPS / (time.perf_counter() - started), bound


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo() -> int:
    ctx = zmq.Context()
    ctx.linger = 0
    with tempfile.TemporaryDirectory(prefix="zmq-ipc-") as folder:
        path = os.path.join(folder, "lesson.sock")  # an ipc path is at most about 100 bytes
        try:
            zc = zero_copy(ctx)
            tcp_rate, _ = round_trips(ctx, f"tcp://127.0.0.1:{free_port()}")
            ipc_rate, _ = round_trips(ctx, f"ipc://{path}")
            file_left = os.path.exists(path)  # the first server socket is closed by now
            again, _ = round_trips(ctx, f"ipc://{path}")  # a bind over the file left behind
        except TimeoutError as exc:
            ctx.destroy()
            print(f"FAIL 24_zero_copy_ipc: {exc}")
            return 1
        ctx.term()
    below = SIZE < zmq.COPY_THRESHOLD
    print(f"{SIZE} bytes, copy=False over inproc: {zc['zero_copy_ms']:.2f} ms; "
          f"copied in and out: {zc['copied_ms']:.2f} ms")  # fmt: skip
    print(f"tracker done before the receiver read: {zc['done_before_recv']}, while it held "
          f"the Frame: {zc['done_while_held']}, after: {zc['released']}")  # fmt: skip
    print(f"the receiver's frame.buffer: a {zc['buffer']} of {zc['length']} bytes")
    print(f"round trips per second: tcp {tcp_rate:,.0f}, ipc {ipc_rate:,.0f}")
    print(f"the ipc file after its socket closed: {'still there' if file_left else 'gone'}")
    problems = []
    if below and not zc["done_before_recv"]:
        problems.append("a small message was not copied")
    if not below and (zc["done_before_recv"] or zc["done_while_held"]):
        problems.append("the tracker said done while the message was still lent")
    if not zc["released"]:
        problems.append("the message was still held: the tracker never said done")
    if zc["buffer"] != "memoryview" or zc["length"] != SIZE:
        problems.append(f"the Frame gave a {zc['buffer']} of {zc['length']} bytes")
    if not again:
        problems.append(f"a second bind to {path} did not serve")
    if problems:
        print("FAIL 24_zero_copy_ipc: " + "; ".join(problems))
        return 1
    lent = "copied anyway below COPY_THRESHOLD" if below else "lent until the receiver let go"
    print(
        f"PASS 24_zero_copy_ipc: {SIZE} bytes {lent}, received as a memoryview; "
        f"ipc's file {'stayed after its socket closed' if file_left else 'went with its socket'}"
        " and a new bind took it over"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo")
    parser.parse_args()
    if not zmq.has("ipc"):
        parser.exit(1, f"{parser.prog}: error: this libzmq has no ipc:// transport\n")
    try:
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
