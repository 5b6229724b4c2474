"""Synchronous vs asynchronous: one request-reply workload, three client styles, measured.

What it shows
  * Blocking (REQ): one request at a time. Simple, and each request pays a full round trip.
  * Poller (DEALER + zmq.Poller): many requests in flight from one thread; replies are matched
    by a request id. Throughput rises because round trips overlap.
  * zmq.asyncio (DEALER): the same overlap written as coroutines; a reader task hands each
    reply to the coroutine awaiting it. This is how step 03's executor is built.

What you will see (demo)
  A table of requests per second and latency p50/p99 for each style against the same server
  process, measured in the same run.

Try it
  python 01-zmq-basics/sync_vs_async.py demo --requests 20000 --window 64
  A wider window raises throughput until the server is the bottleneck; watch p99 grow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from zmq_basics import lesson

ENDPOINT = "tcp://127.0.0.1:5561"
TIMEOUT_MS = 5000


def serve(where: str) -> None:
    """Echo every message, envelope included, so REQ and DEALER clients both get it back."""
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.ROUTER)
        lesson.announce_ready("server", lesson.bind(sock, where))
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


def blocking(ctx: lesson.Ctx, where: str, requests: int) -> Run:
    latencies, ok, start = [], 0, time.perf_counter()
    with ctx.socket(zmq.REQ) as sock:
        sock.rcvtimeo = TIMEOUT_MS  # a blocking recv with a deadline raises zmq.Again
        lesson.connect(sock, where)
        for n in range(requests):
            sent = time.perf_counter()
            sock.send(b"%d" % n)
            ok += sock.recv() == b"%d" % n
            latencies.append((time.perf_counter() - sent) * 1000)
    return Run("blocking REQ", ok, time.perf_counter() - start, latencies)


def with_poller(ctx: lesson.Ctx, where: str, requests: int, window: int) -> Run:
    latencies: list[float] = []
    sent_at: dict[int, float] = {}
    ok = next_id = 0
    start = time.perf_counter()
    with ctx.socket(zmq.DEALER) as sock:
        lesson.connect(sock, where)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while ok < requests:
            while next_id < requests and len(sent_at) < window:  # keep the window full
                sent_at[next_id] = time.perf_counter()
                sock.send(b"%d" % next_id)
                next_id += 1
            if not poller.poll(TIMEOUT_MS):
                raise lesson.LessonError(f"poller: no reply within {TIMEOUT_MS} ms")
            reply_id = int(sock.recv())
            latencies.append((time.perf_counter() - sent_at.pop(reply_id)) * 1000)
            ok += 1
    return Run("Poller DEALER", ok, time.perf_counter() - start, latencies)


async def with_asyncio(where: str, requests: int, window: int) -> Run:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    lesson.connect(sock, where)  # type: ignore[arg-type]  # an asyncio socket is a zmq.Socket too
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
            await asyncio.wait_for(waiting[key], TIMEOUT_MS / 1000)
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


def demo(requests: int = 5000, window: int = 32) -> list[Run]:
    with lesson.Roles("sync_vs_async") as roles, zmq.Context() as ctx:
        ctx.linger = 0
        where = roles.spawn("server", "server", "--endpoint", lesson.ANY_LOCAL_PORT).endpoint
        return [
            blocking(ctx, where, requests),
            with_poller(ctx, where, requests, window),
            asyncio.run(with_asyncio(where, requests, window)),
        ]


def cmd_demo(args: argparse.Namespace) -> int:
    runs = demo(args.requests, args.window)
    print(f"{args.requests} echo requests, window {args.window} for the pipelined styles")
    print(f"  {'style':20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for run in runs:
        print(f"  {run.style:20} {run.per_s:9.0f} {run.pct(50):8.3f} {run.pct(99):8.3f}")
    figures: dict[str, Any] = {"requests": args.requests, "window": args.window}
    figures.update({run.style: run.summary() for run in runs})
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = all(run.ok == args.requests for run in runs)
    return lesson.verdict(
        "sync_vs_async", ok, "all three styles answered every request; numbers above", figures
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    lesson.add_role(
        roles, "server", lambda a: serve(a.endpoint), "a ROUTER echo server", endpoint=ENDPOINT
    )
    demo_role = lesson.add_role(roles, "demo", cmd_demo, "measure the three styles in one run")
    demo_role.add_argument("--requests", type=lesson.positive_int, default=5000)
    demo_role.add_argument("--window", type=lesson.positive_int, default=32, help="in flight")
    demo_role.add_argument("--json", type=Path, help="also write the figures to this file")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
