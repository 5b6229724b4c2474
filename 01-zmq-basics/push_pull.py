"""PUSH-PULL: a ventilator, workers and a sink; fair distribution, and what a dead worker costs.

What it shows
  * PUSH deals messages round-robin over its connected PULL peers, so every worker gets an
    equal share without any scheduler.
  * PUSH never learns whether a worker is alive or busy. Tasks already dealt into a worker's
    pipe die with it: nobody resends them. That is why step 02 hands out work over ROUTER
    with heartbeats instead of PUSH.

What you will see (demo)
  Three worker processes share 300 tasks. One is killed with SIGKILL early on; the sink shows
  the survivors finishing equal shares and counts the tasks that never arrived.

Try it
  python 01-zmq-basics/push_pull.py sink --endpoint tcp://127.0.0.1:5558
  python 01-zmq-basics/push_pull.py worker --ventilator tcp://127.0.0.1:5557 --sink tcp://127.0.0.1:5558
  (start a second worker too, then)
  python 01-zmq-basics/push_pull.py ventilator --endpoint tcp://127.0.0.1:5557 --workers 2
  Run a worker late, after the ventilator sent: it gets nothing, the first worker got it all.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq

from zmq_basics import lesson

VENTILATOR, SINK = "tcp://127.0.0.1:5557", "tcp://127.0.0.1:5558"
IDLE_END_S = 1.0  # the sink stops after this long with no result
log = logging.getLogger("push_pull")


def ventilate(sock: lesson.Sock, tasks: int, work_ms: int) -> None:
    for task_id in range(tasks):
        sock.send_string(f"{task_id}:{work_ms}")


def work(ventilator: str, sink: str, name: str) -> None:
    with zmq.Context() as ctx:
        tasks, results = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        lesson.connect(tasks, ventilator)
        lesson.connect(results, sink)
        lesson.announce_ready(name, ventilator)
        while True:
            task_id, work_ms = tasks.recv_string().split(":")
            time.sleep(int(work_ms) / 1000)  # stands in for real work
            results.send_string(f"{name}:{task_id}")


def collect(
    sock: lesson.Sock, expected: int, on_result: Callable[[int], None] = lambda n: None
) -> Counter[str]:
    """Count results per worker until all arrived or none came for IDLE_END_S."""
    done: Counter[str] = Counter()
    seen: set[str] = set()
    while len(seen) < expected and sock.poll(int(IDLE_END_S * 1000)):
        worker, task_id = sock.recv_string().split(":")
        if task_id not in seen:
            seen.add(task_id)
            done[worker] += 1
            on_result(len(seen))
    return done


@dataclass
class PushPullDemo:
    sent: int
    per_worker: dict[str, int]
    killed: str

    @property
    def lost(self) -> int:
        return self.sent - sum(self.per_worker.values())


def demo(
    workers: int = 3, tasks: int = 300, work_ms: int = 10, kill_after: int = 30
) -> PushPullDemo:
    with lesson.Roles("push_pull") as roles, zmq.Context() as ctx:
        ventilator, sink = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        ventilator.linger = sink.linger = 0
        vent_at, sink_at = (
            lesson.bind(ventilator, lesson.ANY_LOCAL_PORT),
            lesson.bind(sink, lesson.ANY_LOCAL_PORT),
        )
        names = [f"worker-{n}" for n in range(1, workers + 1)]
        with lesson.PeerWatch(ventilator) as peers:
            children = {
                name: roles.spawn(
                    name, "worker", "--ventilator", vent_at, "--sink", sink_at, "--name", name
                )
                for name in names
            }
            # Without this wait the first worker to connect would be dealt every task.
            peers.wait(workers, timeout_s=10)
        ventilate(ventilator, tasks, work_ms)

        def kill_first_worker(results_so_far: int) -> None:
            if results_so_far == kill_after:
                print(f"{results_so_far} results in: killing {names[0]} with SIGKILL")
                children[names[0]].kill()

        done = collect(sink, tasks, kill_first_worker)
        return PushPullDemo(tasks, {name: done[name] for name in names}, names[0])


def cmd_demo(_: argparse.Namespace) -> int:
    result = demo()
    for name, count in result.per_worker.items():
        print(f"  {name}: {count} tasks done{'  (killed)' if name == result.killed else ''}")
    print(f"  lost with the killed worker: {result.lost} of {result.sent}")
    survivors = [n for w, n in result.per_worker.items() if w != result.killed]
    fair = max(survivors) - min(survivors) <= 1
    return lesson.verdict(
        "push_pull",
        result.lost > 0 and fair,
        f"survivors got equal shares {survivors}; {result.lost} tasks silently lost with PUSH",
        {"sent": result.sent, "lost": result.lost, "survivors": survivors},
    )


def cmd_ventilator(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.PUSH)
        sock.linger = 5000  # give queued tasks time to leave before we exit
        with lesson.PeerWatch(sock) as peers:
            lesson.announce_ready("ventilator", lesson.bind(sock, args.endpoint))
            peers.wait(args.workers, timeout_s=args.wait)
        ventilate(sock, args.tasks, args.work_ms)
        log.info("sent %d tasks", args.tasks)
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.PULL)
        lesson.announce_ready("sink", lesson.bind(sock, args.endpoint))
        sock.poll()  # wait as long as it takes for the first result, then until idle
        done = collect(sock, args.tasks)
        log.info("results per worker: %s (total %d)", dict(done), sum(done.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = lesson.make_parser(__doc__)
    vent = lesson.add_role(
        roles, "ventilator", cmd_ventilator, "bind PUSH, deal tasks", endpoint=VENTILATOR
    )
    vent.add_argument("--workers", type=lesson.positive_int, default=1, help="wait for this many")
    vent.add_argument("--wait", type=float, default=60.0, help="seconds to wait for them")
    vent.add_argument("--tasks", type=lesson.positive_int, default=100)
    vent.add_argument("--work-ms", type=lesson.positive_int, default=10)
    worker = lesson.add_role(
        roles,
        "worker",
        lambda a: work(a.ventilator, a.sink, a.name),
        "PULL tasks, PUSH results",
        ventilator=VENTILATOR,
        sink=SINK,
    )
    worker.add_argument("--name", default=f"worker-{os.getpid()}")
    sink = lesson.add_role(roles, "sink", cmd_sink, "bind PULL, count results", endpoint=SINK)
    sink.add_argument("--tasks", type=lesson.positive_int, default=100)
    lesson.add_role(roles, "demo", cmd_demo, "run every role and check the lesson")
    return lesson.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
