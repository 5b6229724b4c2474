"""Lesson 13, sync or async: one request-reply workload, three client styles, measured.

zguide: chapter 3, "The Asynchronous Client/Server Pattern"; pyzmq's documentation, "Asyncio
support".
Terms: round trip, pipelining, window (requests in flight), zmq.Poller, zmq.asyncio.

What it shows
  * Blocking (REQ): one request at a time. Simple, and each request pays a full round trip.
  * Poller (DEALER + zmq.Poller): many requests in flight from one thread; replies are matched
    by a request id. Throughput rises because round trips overlap.
  * zmq.asyncio (DEALER): the same overlap written as coroutines; a reader task hands each
    reply to the coroutine awaiting it. Convenient, and slower than the Poller here: every
    send and receive goes through the event loop. Step 03's executor keeps the coroutine
    style but drives a plain socket from asyncio itself (its loop_socket.py), for that reason.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  blocking REQ -> server ROUTER: one request at a time
  pipelined DEALER -> server ROUTER: [id] x window, echoed

Try it
  python 13_sync_vs_async.py demo    (requests per second and p50/p99 of each style, one run)
  python 13_sync_vs_async.py demo --requests 20000 --window 64
  A wider window raises throughput until the server is the bottleneck; watch p99 grow (a
  measurement, not a verdict: the demo checks only that every request was answered).

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `REQUESTS, WINDOW = 5000, 32` -> `REQUESTS, WINDOW = 2000, 1`: PASS,
    "2000 echo requests, window 1"
      A window of one is the blocking style again, written with a Poller: compare the rates.
  * `sock.send_multipart(sock.recv_multipart())` -> `sock.recv_multipart()`: FAIL,
    "no reply within 5000 ms"
      A server that never answers: every style's wait has a deadline, so the demo says so
      instead of waiting for ever.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

ENDPOINT = "tcp://127.0.0.1:5561"
TIMEOUT_MS = 5000
REQUESTS, WINDOW = 5000, 32  # the demo's defaults: requests per style, in flight when pipelined
Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


def serve(endpoint: str) -> None:
    """Echo every message, envelope included, so REQ and DEALER clients both get it back."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    print(f"server: echoing on {endpoint}", flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())


@dataclass
class Run:
    style: str
    ok: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds

    def pct(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100)[q - 1]

    def summary(self) -> dict[str, float]:
        return {"per_s": self.per_s, "p50_ms": self.pct(50), "p99_ms": self.pct(99)}


def blocking(ctx: Context, where: str, requests: int) -> Run:
    latencies, ok, start = [], 0, time.perf_counter()
    with ctx.socket(zmq.REQ) as sock:
        sock.rcvtimeo = TIMEOUT_MS  # a blocking recv with a deadline raises zmq.Again
        sock.connect(where)
        for n in range(requests):
            sent = time.perf_counter()
            sock.send(b"%d" % n)
            try:
                ok += sock.recv() == b"%d" % n
            except zmq.Again:
                raise TimeoutError(f"blocking REQ: no reply within {TIMEOUT_MS} ms") from None
            latencies.append((time.perf_counter() - sent) * 1000)
    return Run("blocking REQ", ok, time.perf_counter() - start, latencies)


def with_poller(ctx: Context, where: str, requests: int, window: int) -> Run:
    latencies: list[float] = []
    sent_at: dict[int, float] = {}
    ok = next_id = 0
    start = time.perf_counter()
    with ctx.socket(zmq.DEALER) as sock:
        sock.connect(where)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while ok < requests:
            while next_id < requests and len(sent_at) < window:  # keep the window full
                sent_at[next_id] = time.perf_counter()
                sock.send(b"%d" % next_id)
                next_id += 1
            if not poller.poll(TIMEOUT_MS):
                raise TimeoutError(f"poller: no reply within {TIMEOUT_MS} ms")
            reply_id = int(sock.recv())
            latencies.append((time.perf_counter() - sent_at.pop(reply_id)) * 1000)
            ok += 1
    return Run("Poller DEALER", ok, time.perf_counter() - start, latencies)


async def with_asyncio(where: str, requests: int, window: int) -> Run:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(where)
    waiting: dict[bytes, asyncio.Future[bytes]] = {}
    limit = asyncio.Semaphore(window)

    async def read_replies() -> None:
        while True:
            reply = await sock.recv()
            waiting.pop(reply).set_result(reply)

    async def request(n: int) -> float:
        async with limit:
            key = b"%d" % n
            waiting[key] = asyncio.get_running_loop().create_future()
            sent = time.perf_counter()
            await sock.send(key)
            try:
                await asyncio.wait_for(waiting[key], TIMEOUT_MS / 1000)
            except TimeoutError:
                raise TimeoutError(f"zmq.asyncio: no reply within {TIMEOUT_MS} ms") from None
            return (time.perf_counter() - sent) * 1000

    reader = asyncio.create_task(read_replies())
    start = time.perf_counter()
    try:
        latencies = await asyncio.gather(*(request(n) for n in range(requests)))
    finally:
        reader.cancel()
        sock.close(linger=0)
        ctx.term()
    return Run("zmq.asyncio DEALER", len(latencies), time.perf_counter() - start, list(latencies))


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def measure(requests: int, window: int) -> list[Run]:
    where = free_endpoint()
    server = subprocess.Popen([sys.executable, __file__, "server", where])
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        blocking(ctx, where, 1)  # the first request waits for the server to start: not timed
        return [
            blocking(ctx, where, requests),
            with_poller(ctx, where, requests, window),
            asyncio.run(with_asyncio(where, requests, window)),
        ]
    finally:
        ctx.term()
        server.kill()
        server.wait()


def demo(requests: int, window: int, json_path: Path | None) -> int:
    try:
        runs = measure(requests, window)
    except TimeoutError as exc:
        print(f"FAIL 13_sync_vs_async: {exc}")
        return 1
    print(f"{requests} echo requests, window {window} for the pipelined styles")
    print(f"  {'style':20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for run in runs:
        print(f"  {run.style:20} {run.per_s:9.0f} {run.pct(50):8.3f} {run.pct(99):8.3f}")
    figures: dict[str, Any] = {"requests": requests, "window": window}
    figures.update({run.style: run.summary() for run in runs})
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    ok = all(run.ok == requests for run in runs)
    print(
        f"{'PASS' if ok else 'FAIL'} 13_sync_vs_async: all three styles answered every request; "
        "figures above"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server", help="a ROUTER echo server").add_argument(
        "endpoint", nargs="?", default=ENDPOINT
    )
    demo_role = roles.add_parser("demo", help="measure the three styles in one run")
    demo_role.add_argument("--requests", type=int, default=REQUESTS)
    demo_role.add_argument("--window", type=int, default=WINDOW, help="requests in flight")
    demo_role.add_argument("--json", type=Path, help="save the figures here")
    args = parser.parse_args()
    try:
        if args.role == "server":
            serve(args.endpoint)
            return 0
        if args.requests < 1 or args.window < 1:
            parser.error("--requests and --window must be at least 1")
        return demo(args.requests, args.window, args.json)
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
