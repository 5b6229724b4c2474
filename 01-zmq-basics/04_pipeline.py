"""Lesson 04, pipeline: a ventilator deals tasks, workers do them, a sink collects the results.

zguide: chapter 1, "Divide and Conquer"; chapter 2, "Handling Multiple Sockets" and "Handling
Errors and ETERM" (the kill channel).
Terms: PUSH, PULL, ventilator, sink, fair queuing, Poller, kill channel.

What it shows
  * PUSH deals messages round-robin to its connected PULL peers; PULL takes them from all its
    peers in turn. With no scheduler at all, N workers share a batch N ways, and the batch
    takes about 1/N of the time. Each count is timed REPEATS times and the median kept: one
    sleep() that oversleeps on a busy machine would otherwise decide the figure.
  * Deal only once every worker is connected (lesson 02's monitor says when): PUSH deals only
    to the peers it has, so the first worker to connect is handed all it can queue (up to
    its pipe's high-water marks, lesson 08, 1000 + 1000 by default) and the workers that
    connect later get nothing of a small batch, only what is left of a large one.
  * A worker reads two sockets at once with zmq.Poller: tasks, and a kill channel (PUB-SUB)
    on which the sink says "the batch is done, exit".
  * What PUSH cannot do: it never learns that a worker died. Tasks already dealt to a killed
    worker vanish with it and nobody sends them again. Step 02 hands out work over ROUTER,
    one task per ready worker, and requeues what a dead worker held.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  worker PULL -> ventilator PUSH: "task:ms", dealt round-robin
  worker PUSH -> sink PULL: "name:task", fair-queued
  worker SUB -> sink XPUB: "KILL" (the kill channel; subscriptions up)

Try it
  python 04_pipeline.py batch --workers 2      (the ventilator and the sink, waiting for 2)
  python 04_pipeline.py worker                  (twice, in two more terminals)
  python 04_pipeline.py demo                    (1, 2 and 4 workers timed, then a kill)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `WORKER_COUNTS = (1, 2, 4)` -> `WORKER_COUNTS = (1, 8)`: PASS, "with 8 workers"
      Eight workers share the batch eight ways; the labels come from WORKER_COUNTS.
  * `workers[0].kill()` -> `pass`: FAIL, "no task was lost"
      Nobody is killed, so nothing is lost: the check that PUSH loses a dead worker's tasks
      is a real one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

TASKS, WORK_MS = 32, 20  # 0.64 s of work for one worker (more where sleep() oversleeps)
WORKER_COUNTS = (1, 2, 4)  # the first is the baseline the others are compared with
REPEATS = 3
WAIT_MS = 5000
Socket = zmq.Socket[bytes]


def worker(tasks_from: str, results_to: str, control: str, name: str) -> None:
    ctx = zmq.Context()
    kill = ctx.socket(zmq.SUB)
    kill.connect(control)
    kill.subscribe(b"")
    tasks = ctx.socket(zmq.PULL)
    tasks.connect(tasks_from)
    results = ctx.socket(zmq.PUSH)
    results.connect(results_to)
    poller = zmq.Poller()
    poller.register(tasks, zmq.POLLIN)
    poller.register(kill, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if tasks in ready:
            task_id, work_ms = tasks.recv_string().split(":")
            time.sleep(int(work_ms) / 1000)  # stands in for real work
            results.send_string(f"{name}:{task_id}")
        if kill in ready:
            kill.recv()
            break
    ctx.destroy(linger=0)


class Batch:
    """The ventilator (PUSH), the sink (PULL) and the kill channel (XPUB), all bound by us."""

    def __init__(self, ctx: zmq.Context[Socket], host: str = "127.0.0.1") -> None:
        self.ventilator, self.sink = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        self.control = ctx.socket(zmq.XPUB)  # XPUB: it hears each subscription (lesson 05)
        self.control.xpub_verbose = True  # every worker's subscription, not only the first
        # The monitor must be attached before any worker connects: it reports only what follows.
        self.handshakes = self.ventilator.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.endpoints = []
        for sock in (self.ventilator, self.sink, self.control):
            sock.linger = 0
            sock.bind(f"tcp://{host}:*")
            self.endpoints.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))

    def wait_for_workers(self, count: int) -> None:
        for _ in range(count):
            if not self.handshakes.poll(WAIT_MS):
                raise TimeoutError(f"fewer than {count} workers connected in {WAIT_MS} ms")
            recv_monitor_message(self.handshakes)
            if not self.control.poll(WAIT_MS):
                raise TimeoutError(f"fewer than {count} workers subscribed in {WAIT_MS} ms")
            self.control.recv()  # b"\x01": one more worker listens on the kill channel

    def run(
        self, tasks: int, work_ms: int, on_result: Callable[[int], None] = lambda done: None
    ) -> tuple[float, Counter[str]]:
        """Deal the tasks, collect results until all came or none for a second, then say KILL.

        Returns the seconds from the first task dealt to the last result, and results per worker.
        """
        started = finished = time.monotonic()
        for task_id in range(tasks):
            self.ventilator.send_string(f"{task_id}:{work_ms}")
        done: Counter[str] = Counter()
        while done.total() < tasks and self.sink.poll(1000):
            name, _ = self.sink.recv_string().split(":")
            done[name] += 1
            finished = time.monotonic()
            on_result(done.total())
        self.control.send(b"KILL")
        return finished - started, done

    def close(self) -> None:
        self.handshakes.close()
        for sock in (self.ventilator, self.sink, self.control):
            sock.close()


def start_workers(endpoints: list[str], count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, __file__, "worker", *endpoints, "--name", f"w{n}"])
        for n in range(1, count + 1)
    ]


def stop(workers: list[subprocess.Popen[bytes]]) -> int:
    """Wait for the workers to obey KILL; kill any that did not. Returns how many obeyed."""
    obeyed = 0
    for process in workers:
        try:
            process.wait(timeout=WAIT_MS / 1000)
            obeyed += 1
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return obeyed


def timed_round(ctx: zmq.Context[Socket], count: int) -> tuple[float, Counter[str], int]:
    batch = Batch(ctx)
    workers = start_workers(batch.endpoints, count)
    try:
        batch.wait_for_workers(count)
        seconds, done = batch.run(TASKS, WORK_MS)
    finally:
        obeyed = stop(workers)
        batch.close()
    return seconds, done, obeyed


def kill_round(ctx: zmq.Context[Socket]) -> tuple[int, int]:
    """Two workers, one SIGKILLed mid-batch: return (results received, tasks sent)."""
    batch = Batch(ctx)
    workers = start_workers(batch.endpoints, 2)

    def kill_first_worker(results_so_far: int) -> None:
        if results_so_far == TASKS // 8:
            workers[0].kill()

    try:
        batch.wait_for_workers(2)
        _, done = batch.run(TASKS, WORK_MS, on_result=kill_first_worker)
    finally:
        stop(workers)
        batch.close()
    return done.total(), TASKS


def demo(json_path: Path | None) -> int:
    ctx = zmq.Context()
    medians: dict[int, float] = {}
    spread: dict[int, tuple[float, float]] = {}
    problems = []
    for count in WORKER_COUNTS:
        timings = []
        for _ in range(REPEATS):
            took, done, obeyed = timed_round(ctx, count)
            timings.append(took)
            shares = sorted(done.values())
            if sum(shares) != TASKS or obeyed != count or shares[-1] - shares[0] > 1:
                problems.append(f"{count} worker(s): shares {shares}, {obeyed} obeyed KILL")
        timings.sort()
        medians[count], spread[count] = timings[len(timings) // 2], (timings[0], timings[-1])
        print(
            f"{count} worker(s): {medians[count]:5.2f} s (median of {REPEATS}, "
            f"{timings[0]:.2f}-{timings[-1]:.2f}), shares {shares}, {obeyed} exited on KILL"
        )
    received, sent = kill_round(ctx)
    ctx.term()
    print(f"one of two workers SIGKILLed mid-batch: {sent - received} of {sent} tasks never came")
    base = WORKER_COUNTS[0]
    speedup = {count: medians[base] / medians[count] for count in WORKER_COUNTS[1:]}
    # The machine's timer decides how close to N times this gets; fewer seconds it must be.
    problems += [
        f"no faster with {n} workers than with {base}" for n, x in speedup.items() if x <= 1
    ]
    if received == sent:
        problems.append(f"no task was lost: all {sent} came back")
    if json_path:
        figures = {
            "tasks": TASKS,
            "work_ms": WORK_MS,
            "repeats": REPEATS,
            "seconds": medians,
            "spread": spread,
            "lost_with_killed_worker": sent - received,
        }
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    said = ", ".join(f"{x:.1f}x with {n} workers" for n, x in speedup.items())
    if problems:
        print("FAIL 04_pipeline: " + "; ".join(problems) + f" (speed-up {said or 'not measured'})")
        return 1
    print(f"PASS 04_pipeline: speed-up {said}; {sent - received} tasks lost with a killed worker")
    return 0


def batch_by_hand(workers: int, tasks: int) -> None:
    ctx = zmq.Context()
    batch = Batch(ctx, host="*")
    print("run workers with: python 04_pipeline.py worker " + " ".join(batch.endpoints))
    batch.wait_for_workers(workers)
    took, done = batch.run(tasks, WORK_MS)
    print(f"{sum(done.values())} of {tasks} results in {took:.2f} s: {dict(done)}")
    batch.close()
    ctx.term()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    work = roles.add_parser("worker", help="PULL tasks, PUSH results, stop on KILL")
    work.add_argument("tasks_from", nargs="?", default="tcp://127.0.0.1:5557")
    work.add_argument("results_to", nargs="?", default="tcp://127.0.0.1:5558")
    work.add_argument("control", nargs="?", default="tcp://127.0.0.1:5559")
    work.add_argument("--name", default="worker")
    batch = roles.add_parser("batch", help="ventilator and sink: wait for workers, time a batch")
    batch.add_argument("--workers", type=int, default=1)
    batch.add_argument("--tasks", type=int, default=TASKS)
    roles.add_parser("demo").add_argument("--json", type=Path, help="save the figures here")
    args = parser.parse_args()
    try:
        if args.role == "worker":
            worker(args.tasks_from, args.results_to, args.control, args.name)
        elif args.role == "batch":
            if args.workers < 1 or args.tasks < 1:
                parser.error("--workers and --tasks must be at least 1")
            batch_by_hand(args.workers, args.tasks)
        else:
            return demo(args.json)
    except (zmq.ZMQError, TimeoutError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
