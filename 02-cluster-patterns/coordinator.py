"""The coordinator: an MDP/0.2 broker that hands out work, watches workers and loses no task.

Clients and workers connect to one ROUTER endpoint (optionally workers to a second one). Each
service has a queue of requests and a list of idle workers; a request goes to the idle worker
that has waited longest (or has done least, with --balance least-done), or to the worker it
names ("echo@w3") or one with the tags it needs ("echo#gpu").

Beyond plain MDP, because a cluster needs it:
  * heartbeats go to busy workers too and busy workers must keep beating, so a worker that
    dies mid-task is noticed; each worker's rhythm is learned (heartbeat.Liveness), so slow
    third-party workers are spared. Plain MDP workers that cannot beat while busy are named
    with --quiet-when-busy SERVICE and get --busy-timeout instead while they hold a task;
  * the task a dead worker held is requeued with its attempt count and a back-off, and fails
    with an error reply, never silence, once it has used its retries; a late FINAL from a
    worker already declared dead is discarded, so each request gets exactly one FINAL;
  * requests wait for a worker for at most --service-timeout, queues have a limit, and both
    end in an error reply;
  * every state change is published on the events PUB socket for the monitor;
  * SIGTERM drains: new requests are refused, running tasks may finish, then workers are told
    to reconnect elsewhere and the process exits 0.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import signal
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq

from cluster_patterns import protocol as mdp
from cluster_patterns.heartbeat import OUR_INTERVAL_S, Backoff, Liveness
from zmq_basics import lesson

log = logging.getLogger("coordinator")
HOUSEKEEPING_S = 0.05  # the longest the loop sleeps before checking its timers
STATS_INTERVAL_S = 1.0
STATS_MAX_WORKERS = 500  # a stats snapshot lists at most this many workers


@dataclass
class Config:
    heartbeat_s: float = OUR_INTERVAL_S
    liveness: float = 3.0  # intervals of silence before a worker is dead
    max_retries: int = 3  # reassignments after the first attempt
    service_timeout_s: float = 10.0  # how long a request may wait for a worker
    # Services whose workers fall silent while busy (plain MDP workers, like the zguide's):
    # while they hold a task they are allowed busy_timeout_s instead of their heartbeat rhythm.
    quiet_when_busy: frozenset[bytes] = frozenset()
    busy_timeout_s: float = 300.0
    max_queue: int = 10_000  # per service
    max_message_bytes: int = 1 << 20
    balance: str = "lru"  # or "least-done"
    drain_timeout_s: float = 10.0
    # Messages queued per peer connection, each way. A client that stops reading loses the
    # replies beyond this (counted as undeliverable) instead of growing our memory.
    hwm: int = 100_000


@dataclass(slots=True)
class Task:
    id: int
    client: bytes
    client_sock: lesson.Sock
    delimited: bool
    service: bytes  # as requested, echoed in the reply
    want: mdp.ServiceRequest
    body: list[bytes]
    expires_at: float
    queued_at: float
    attempts: int = 0
    not_before: float = 0.0
    started_at: float = 0.0


@dataclass(slots=True)
class Worker:
    identity: bytes
    sock: lesson.Sock
    service: bytes
    tags: frozenset[str]
    delimited: bool
    liveness: Liveness
    task: Task | None = None
    check_at: float = float("inf")  # when the earliest pending liveness check fires
    done: int = 0
    failed: int = 0

    @property
    def name(self) -> str:
        """The identity as text when it is printable (a --name), else as hex."""
        text = self.identity.decode("ascii", errors="replace")
        return text if self.identity.isascii() and text.isprintable() else self.identity.hex()


@dataclass
class Service:
    queue: deque[Task] = field(default_factory=deque)
    idle: OrderedDict[bytes, Worker] = field(default_factory=OrderedDict)  # longest idle first


class Coordinator:
    def __init__(
        self,
        ctx: lesson.Ctx,
        endpoint: str,
        events: str,
        worker_endpoint: str | None = None,
        config: Config | None = None,
    ) -> None:
        self.cfg = config or Config()
        self.frontend = self._router(ctx)
        self.endpoints = [lesson.bind(self.frontend, endpoint)]
        self.sockets = [self.frontend]
        if worker_endpoint:
            backend = self._router(ctx)
            self.endpoints.append(lesson.bind(backend, worker_endpoint))
            self.sockets.append(backend)
        # XPUB rather than PUB: it tells us which topic prefixes anyone subscribed to, so an
        # event nobody listens for is never even serialised.
        self.events = ctx.socket(zmq.XPUB)
        self.events.linger = 0
        self.events_endpoint = lesson.bind(self.events, events)
        self.subscriptions: set[bytes] = set()
        self.wanted: dict[str, bool] = {}  # topic -> does any subscription cover it
        self.workers: dict[bytes, Worker] = {}
        self.services: dict[bytes, Service] = {}
        self.timers: list[tuple[float, int, bytes]] = []  # (when, kind, worker) lazily rechecked
        self.counters: Counter[str] = Counter()
        self.next_task_id = 0
        self.draining_since: float | None = None
        self.stop = threading.Event()
        self.next_housekeeping = self.next_stats = 0.0

    def _router(self, ctx: lesson.Ctx) -> lesson.Sock:
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.router_mandatory = True  # an unroutable reply raises instead of vanishing
        sock.router_handover = True  # a named worker that reconnects takes over its identity
        sock.maxmsgsize = self.cfg.max_message_bytes * 2  # libzmq cuts off grossly oversized peers
        sock.sndhwm = sock.rcvhwm = self.cfg.hwm
        sock.backlog = 1024  # thousands of workers connect at once after a restart
        return sock

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (*self.sockets, self.events):
            poller.register(sock, zmq.POLLIN)
        self.publish("broker.started", endpoints=self.endpoints)
        while not self.stop.is_set():
            now = time.monotonic()
            wait_s = min(HOUSEKEEPING_S, self.next_housekeeping - now)
            for sock, _ in poller.poll(max(0, int(wait_s * 1000))):
                if sock is self.events:
                    self._track_subscriptions()
                else:
                    self._drain_socket(sock)
            now = time.monotonic()
            if now >= self.next_housekeeping:
                self.housekeeping(now)
            if self.draining_since is not None and self._drained(now):
                break
        self._say_goodbye()

    def _drain_socket(self, sock: lesson.Sock, batch: int = 1000) -> None:
        for _ in range(batch):  # bounded, so one busy socket cannot starve the timers
            try:
                frames = mdp.recv_now(sock)
            except zmq.Again:
                return
            try:
                self.handle(sock, frames, time.monotonic())
            except Exception:  # one bad message must never take the coordinator down
                log.exception("internal error while handling a message; message dropped")
                self.counters["dropped.internal-error"] += 1

    def handle(self, sock: lesson.Sock, frames: list[bytes], now: float) -> None:
        if sum(map(len, frames)) > self.cfg.max_message_bytes:
            self.counters["dropped.oversized"] += 1
            return
        try:
            msg = mdp.parse_at_broker(frames)
        except mdp.ProtocolError as exc:
            self.counters[f"dropped.{exc.kind}"] += 1
            return
        if msg.header == mdp.CLIENT:
            self.on_client(sock, msg, now)
        else:
            self.on_worker(sock, msg, now)

    # -- clients ----------------------------------------------------------------------------

    def on_client(self, sock: lesson.Sock, msg: mdp.Inbound, now: float) -> None:
        self.counters["requests"] += 1
        name, body = msg.frames[0], msg.frames[1:]
        if name.startswith(mdp.MMI_PREFIX):
            self._send(
                sock,
                mdp.to_client(msg.sender, msg.delimited, mdp.C_FINAL, name, self.mmi(name, body)),
            )
            return
        want = mdp.parse_service_name(name)
        queue = self.service(want.service).queue
        reason = "coordinator draining" if self.draining_since is not None else None
        if reason is None and len(queue) >= self.cfg.max_queue:
            reason = f"queue for {want.service.decode(errors='replace')} is full"
        if reason:
            self.counters["rejected"] += 1
            error = mdp.error_body(body, reason)
            self._send(sock, mdp.to_client(msg.sender, msg.delimited, mdp.C_FINAL, name, *error))
            return
        self.next_task_id += 1
        task = Task(
            self.next_task_id,
            msg.sender,
            sock,
            msg.delimited,
            name,
            want,
            body,
            expires_at=now + self.cfg.service_timeout_s,
            queued_at=now,
        )
        queue.append(task)
        self.publish("task.queued", task=task.id, service=name.decode(errors="replace"))
        self.dispatch(want.service, now)

    def service(self, name: bytes) -> Service:
        found = self.services.get(name)
        if found is None:
            found = self.services[name] = Service()
        return found

    def mmi(self, name: bytes, body: list[bytes]) -> bytes:
        if name != b"mmi.service":
            return b"501"
        wanted = mdp.parse_service_name(body[0] if body else b"").service
        known = any(w.service == wanted for w in self.workers.values())
        return b"200" if known else b"404"

    def reply_error(self, task: Task, reason: str, topic: str) -> None:
        error = mdp.error_body(task.body, reason)
        self._send(
            task.client_sock,
            mdp.to_client(task.client, task.delimited, mdp.C_FINAL, task.service, *error),
        )
        self.publish(topic, task=task.id, reason=reason, attempts=task.attempts)

    # -- workers ----------------------------------------------------------------------------

    def on_worker(self, sock: lesson.Sock, msg: mdp.Inbound, now: float) -> None:
        worker = self.workers.get(msg.sender)
        if msg.command == mdp.W_READY:
            if worker is not None:  # the same identity came back: its old self is gone
                self.bury(worker, now, "re-registered")
            self.register(sock, msg, now)
            return
        if worker is None:
            self.counters["unexpected.unknown-worker"] += 1
            if msg.command != mdp.W_DISCONNECT:
                self._send(sock, mdp.to_worker(msg.sender, msg.delimited, mdp.W_DISCONNECT))
            return
        worker.liveness.heard(now, is_heartbeat=msg.command == mdp.W_HEARTBEAT)
        if msg.command == mdp.W_HEARTBEAT:
            self._schedule_check(worker)  # a freshly learned rhythm may bring the deadline closer
        elif msg.command == mdp.W_DISCONNECT:
            self.bury(worker, now, "disconnected", topic="worker.left")
        elif msg.command in (mdp.W_PARTIAL, mdp.W_FINAL) and self._holds(worker, msg.frames[0]):
            self.on_result(worker, msg, now)
        else:  # REQUEST from a worker, or a result for a task it does not hold
            self.counters["unexpected.command"] += 1
            self._send(sock, mdp.to_worker(msg.sender, msg.delimited, mdp.W_DISCONNECT))
            self.bury(worker, now, "protocol violation")

    @staticmethod
    def _holds(worker: Worker, client: bytes) -> bool:
        return worker.task is not None and worker.task.client == client

    def register(self, sock: lesson.Sock, msg: mdp.Inbound, now: float) -> None:
        announced = mdp.parse_service_name(msg.frames[0])
        if announced.service.startswith(mdp.MMI_PREFIX) or announced.pinned:
            self.counters["dropped.bad-ready"] += 1
            return
        liveness = Liveness(now, liveness=self.cfg.liveness)
        worker = Worker(
            msg.sender, sock, announced.service, announced.tags, msg.delimited, liveness
        )
        self.workers[msg.sender] = worker
        self.publish(
            "worker.joined",
            worker=worker.name,
            service=announced.service.decode(errors="replace"),
            tags=sorted(announced.tags),
        )
        self._watch(worker, now)
        self.make_idle(worker, now)

    def on_result(self, worker: Worker, msg: mdp.Inbound, now: float) -> None:
        task = worker.task
        assert task is not None
        command = mdp.C_PARTIAL if msg.command == mdp.W_PARTIAL else mdp.C_FINAL
        error = mdp.error_reason(msg.frames[2:])
        if command == mdp.C_FINAL:  # counted before the reply leaves: whoever sees it sees these
            worker.done += 1
            worker.failed += error is not None
            self.counters["replies"] += 1
        self._send(
            task.client_sock,
            mdp.to_client(task.client, task.delimited, command, task.service, *msg.frames[2:]),
        )
        if command == mdp.C_PARTIAL:
            return
        self.publish(
            "task.done",
            task=task.id,
            worker=worker.name,
            attempts=task.attempts,
            seconds=now - task.started_at,
            waited=task.started_at - task.queued_at,
            error=error,
        )
        worker.task = None
        self.make_idle(worker, now)

    def make_idle(self, worker: Worker, now: float) -> None:
        self.service(worker.service).idle[worker.identity] = worker
        self.publish("worker.ready", worker=worker.name)
        self.dispatch(worker.service, now)

    def bury(self, worker: Worker, now: float, reason: str, topic: str = "worker.dead") -> None:
        """Forget a worker; requeue or fail the task it held."""
        self.workers.pop(worker.identity, None)
        self.services[worker.service].idle.pop(worker.identity, None)
        if topic == "worker.dead":  # if it is only frozen, it will reconnect when it wakes
            self._send(
                worker.sock, mdp.to_worker(worker.identity, worker.delimited, mdp.W_DISCONNECT)
            )
        self.publish(
            topic, worker=worker.name, reason=reason, silence=now - worker.liveness.last_heard
        )
        if worker.task is not None:
            self.retry(worker.task, now, f"worker {worker.name} {reason}")

    def retry(self, task: Task, now: float, reason: str) -> None:
        if task.attempts > self.cfg.max_retries:
            self.reply_error(
                task, f"gave up after {task.attempts} attempts: {reason}", "task.failed"
            )
            return
        backoff = Backoff(initial_s=0.05, cap_s=2.0)
        backoff.attempts = task.attempts - 1
        task.not_before = now + backoff.next_delay()
        task.expires_at = now + self.cfg.service_timeout_s
        self.services[task.want.service].queue.appendleft(task)  # it has waited longest
        self.publish("task.retried", task=task.id, attempts=task.attempts, reason=reason)

    # -- matching work to workers -----------------------------------------------------------

    def dispatch(self, service_name: bytes, now: float) -> None:
        service = self.services[service_name]
        if not service.queue or not service.idle:
            return
        waiting: list[Task] = []
        while service.queue and service.idle:
            task = service.queue.popleft()
            worker = self.pick(service, task) if task.not_before <= now else None
            if worker is None:
                waiting.append(task)
            else:
                self.assign(task, worker, now)
        service.queue.extendleft(reversed(waiting))

    def pick(self, service: Service, task: Task) -> Worker | None:
        want = task.want
        if want.pinned is not None:
            return service.idle.get(want.pinned)
        candidates = (w for w in service.idle.values() if want.tags <= w.tags)
        if self.cfg.balance == "least-done":
            return min(candidates, key=lambda w: w.done, default=None)
        return next(candidates, None)

    def assign(self, task: Task, worker: Worker, now: float) -> None:
        del self.services[worker.service].idle[worker.identity]
        worker.task, task.attempts, task.started_at = task, task.attempts + 1, now
        frames = mdp.to_worker(
            worker.identity, worker.delimited, mdp.W_REQUEST, task.client, b"", *task.body
        )
        if self._send(worker.sock, frames):
            self.publish("task.assigned", task=task.id, worker=worker.name, attempt=task.attempts)
        else:
            self.bury(worker, now, "unreachable")

    # -- timers -----------------------------------------------------------------------------

    def _watch(self, worker: Worker, now: float) -> None:
        self._schedule_check(worker)
        heapq.heappush(self.timers, (now + self._beat_interval(worker), 1, worker.identity))

    def _deadline(self, worker: Worker) -> float:
        deadline = worker.liveness.deadline()
        if worker.task is not None and worker.service in self.cfg.quiet_when_busy:
            deadline = max(deadline, worker.task.started_at + self.cfg.busy_timeout_s)
        return deadline

    def _schedule_check(self, worker: Worker) -> None:
        """Timers are lazy (a check that finds the worker heard from just re-arms itself), so
        one is only added when the deadline moved earlier than the one already armed."""
        deadline = self._deadline(worker)
        if deadline < worker.check_at:
            worker.check_at = deadline
            heapq.heappush(self.timers, (deadline, 0, worker.identity))

    def _beat_interval(self, worker: Worker) -> float:
        # Beat back at the worker's own rhythm: a 1 Hz worker does not need 4 beats a second.
        return max(self.cfg.heartbeat_s, worker.liveness.interval or self.cfg.heartbeat_s)

    def housekeeping(self, now: float) -> None:
        self.next_housekeeping = now + HOUSEKEEPING_S
        while self.timers and self.timers[0][0] <= now:
            when, kind, identity = heapq.heappop(self.timers)
            worker = self.workers.get(identity)
            if worker is None:
                continue  # a timer of a worker already gone
            if kind == 0:
                if when == worker.check_at:  # superseded checks are dropped here
                    self._check_alive(worker, now)
            else:  # a fixed rhythm, busy or not, so the worker can learn it too
                self._send(worker.sock, mdp.to_worker(identity, worker.delimited, mdp.W_HEARTBEAT))
                heapq.heappush(self.timers, (now + self._beat_interval(worker), 1, identity))
        for name, service in self.services.items():
            self._expire(service, now)
            self.dispatch(name, now)  # tasks whose back-off has passed
        if now >= self.next_stats:
            self.next_stats = now + STATS_INTERVAL_S
            self.publish("stats", **self.snapshot(now))

    def _check_alive(self, worker: Worker, now: float) -> None:
        if now > self._deadline(worker):
            self.bury(worker, now, "silent")
        else:
            worker.check_at = float("inf")
            self._schedule_check(worker)

    def _expire(self, service: Service, now: float) -> None:
        if not any(task.expires_at <= now for task in service.queue):
            return
        keep: deque[Task] = deque()
        for task in service.queue:
            if task.expires_at > now:
                keep.append(task)
            else:
                name = task.service.decode(errors="replace")
                self.reply_error(
                    task,
                    f"no worker for {name} within {self.cfg.service_timeout_s:g}s",
                    "task.expired",
                )
        service.queue = keep

    # -- draining and output ----------------------------------------------------------------

    def request_drain(self) -> None:
        """Called from the signal handler: only flags; the loop does the work."""
        if self.draining_since is None:
            self.draining_since = time.monotonic()

    def _drained(self, now: float) -> bool:
        for service in self.services.values():
            while service.queue:
                self.reply_error(service.queue.popleft(), "coordinator draining", "task.failed")
        busy = [w for w in self.workers.values() if w.task is not None]
        if busy and now - (self.draining_since or now) < self.cfg.drain_timeout_s:
            return False
        for worker in busy:
            assert worker.task is not None
            self.reply_error(
                worker.task, "coordinator stopped before the task finished", "task.failed"
            )
        return True

    def _say_goodbye(self) -> None:
        for worker in self.workers.values():  # tell them to find the next coordinator
            self._send(
                worker.sock, mdp.to_worker(worker.identity, worker.delimited, mdp.W_DISCONNECT)
            )
        self.publish("broker.stopped", counters=dict(self.counters))

    def _send(self, sock: lesson.Sock, frames: list[bytes]) -> bool:
        try:
            mdp.send_now(sock, frames)
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or not keeping up (EAGAIN)
            self.counters[f"undeliverable.{lesson.reason(exc)}"] += 1
            return False
        return True

    def _track_subscriptions(self) -> None:
        while self.events.poll(0):
            message = self.events.recv()  # b"\x01" + prefix to subscribe, b"\x00" + prefix to leave
            if message[:1] == b"\x01":
                self.subscriptions.add(message[1:])
            else:
                self.subscriptions.discard(message[1:])
            self.wanted.clear()

    def publish(self, topic: str, **fields: Any) -> None:
        wanted = self.wanted.get(topic)
        if wanted is None:
            encoded = topic.encode()
            wanted = self.wanted[topic] = any(encoded.startswith(p) for p in self.subscriptions)
        if wanted:
            payload = json.dumps({"ts": time.time(), **fields}).encode()
            self._send(self.events, [topic.encode(), payload])

    def snapshot(self, now: float) -> dict[str, Any]:
        workers = {
            w.name: {
                "service": w.service.decode(errors="replace"),
                "state": "busy" if w.task else "idle",
                "heard_s": now - w.liveness.last_heard,
                "interval_s": w.liveness.interval,
                "done": w.done,
                "failed": w.failed,
            }
            for w in list(self.workers.values())[:STATS_MAX_WORKERS]
        }
        return {
            "workers": workers,
            "worker_count": len(self.workers),
            "queued": sum(len(s.queue) for s in self.services.values()),
            "in_flight": sum(1 for w in self.workers.values() if w.task),
            "counters": dict(self.counters),
            "pid": os.getpid(),
        }


def cmd_run(args: argparse.Namespace) -> int:
    config = Config(
        heartbeat_s=args.heartbeat,
        busy_timeout_s=args.busy_timeout,
        liveness=args.liveness,
        max_retries=args.max_retries,
        service_timeout_s=args.service_timeout,
        max_queue=args.max_queue,
        max_message_bytes=args.max_message_bytes,
        balance=args.balance,
        drain_timeout_s=args.drain_timeout,
        quiet_when_busy=frozenset(s.encode() for s in args.quiet_when_busy),
    )
    with zmq.Context() as ctx:
        coordinator = Coordinator(ctx, args.endpoint, args.events, args.worker_endpoint, config)
        signal.signal(signal.SIGTERM, lambda *_: coordinator.request_drain())
        signal.signal(signal.SIGINT, lambda *_: coordinator.request_drain())
        log.info(
            "coordinator ready on %s (events on %s)",
            " and ".join(coordinator.endpoints),
            coordinator.events_endpoint,
        )
        coordinator.run()
        log.info("coordinator stopped: %s", dict(coordinator.counters))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = lesson.program_parser(__doc__)
    lesson.add_endpoint(parser, "--endpoint", "COORDINATOR_ENDPOINT", "tcp://127.0.0.1:5555")
    lesson.add_endpoint(parser, "--events", "COORDINATOR_EVENTS", "tcp://127.0.0.1:5556")
    parser.add_argument(
        "--worker-endpoint", type=lesson.endpoint, help="a separate one for workers"
    )
    parser.add_argument("--heartbeat", type=float, default=OUR_INTERVAL_S, help="seconds")
    parser.add_argument("--liveness", type=float, default=3.0, help="silent intervals = dead")
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument(
        "--service-timeout", type=float, default=10.0, help="seconds a request waits"
    )
    parser.add_argument("--max-queue", type=lesson.positive_int, default=10_000)
    parser.add_argument("--max-message-bytes", type=lesson.positive_int, default=1 << 20)
    parser.add_argument("--balance", choices=["lru", "least-done"], default="lru")
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    parser.add_argument(
        "--quiet-when-busy",
        action="append",
        default=[],
        metavar="SERVICE",
        help="a service whose workers do not heartbeat while busy (repeatable)",
    )
    parser.add_argument(
        "--busy-timeout",
        type=float,
        default=300.0,
        help="seconds such a worker may stay silent with a task",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(func=cmd_run)
    return lesson.run_main(parser, argv, lesson.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    raise SystemExit(main())
