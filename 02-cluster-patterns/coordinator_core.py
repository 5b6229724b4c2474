"""The coordinator's state machine, with no sockets and no clock of its own (sans-IO).

Everything the broker decides lives here: which worker gets which request, when a silent worker
is dead, when a request is retried, expires or is refused. It is fed what arrived and when:

    core.handle(route, frames, now)     a message from a ROUTER socket (route says which one)
    core.subscription(message)          an XPUB (un)subscription from the events socket
    core.tick(now)                      time passed: timers, expiry, back-off, stats
    core.undeliverable(out, why, now)   a message the shell could not send

and it answers with what to do, which the I/O shell (coordinator.py) carries out:

    core.outbox   Outgoing(route, frames, assigned_to) to send on ROUTER socket `route`
    core.events   (topic, fields) to publish for the monitor

With no sockets and no threads, every rule (retries, expiry, pinning, tags, drain, quiet
workers, bounded queues) is tested by feeding messages and moving a number that stands for the
clock (tests/unit/test_coordinator_core.py). The design follows h11 and majortomo: the protocol and
its state in one place, the I/O around it in another.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from cluster_patterns import protocol as mdp
from zcl.curve import ROLES  # what a key may do (authorized_keys roles=), read there
from zcl.heartbeat import OUR_INTERVAL_S, Backoff, Liveness

Route = int  # which of the shell's ROUTER sockets a peer talks through
FRONTEND: Route = 0  # clients, and workers unless they have an endpoint of their own
BACKEND: Route = 1  # the optional separate worker endpoint

STATS_INTERVAL_S = 1.0
STATS_MAX_WORKERS = 500  # a stats snapshot lists at most this many workers
# Every topic the events socket carries; a subscription is useful only if it is a prefix of one.
TOPICS = frozenset(
    {
        "broker.started",
        "broker.stopped",
        "stats",
        "task.assigned",
        "task.done",
        "task.expired",
        "task.failed",
        "task.queued",
        "task.retried",
        "worker.dead",
        "worker.joined",
        "worker.left",
        "worker.ready",
    }
)
LONGEST_TOPIC = max(len(topic.encode()) for topic in TOPICS)
SUBSCRIBABLE = frozenset(t.encode()[:n] for t in TOPICS for n in range(len(t) + 1))
RETRY_BACKOFF_INITIAL_S = 0.05
RETRY_BACKOFF_CAP_S = 2.0


class Timer(IntEnum):
    """What a timer on the heap does when it fires."""

    CHECK_ALIVE = 0  # is the worker still within its deadline?
    SEND_HEARTBEAT = 1  # beat to the worker, busy or not, so it can learn our rhythm


@dataclass
class Config:
    """Every knob of the coordinator; the command line takes its defaults from here."""

    heartbeat_s: float = OUR_INTERVAL_S
    liveness: float = 3.0  # intervals of silence before a worker is dead
    max_retries: int = 3  # reassignments after the first attempt
    service_timeout_s: float = 10.0  # how long a request may wait for a worker
    # Services whose workers fall silent while busy (plain MDP workers that heartbeat only while
    # idle):
    # while they hold a task they are allowed busy_timeout_s instead of their heartbeat rhythm.
    quiet_when_busy: frozenset[bytes] = frozenset()
    busy_timeout_s: float = 300.0
    max_queue: int = 10_000  # per service
    max_services: int = 1000  # services with work waiting or a worker idle, at once
    max_unknown_prefixes: int = 10_000  # subscriptions to no topic before the socket is reopened
    # ... or their bytes: libzmq's trie takes some 47 bytes per byte of a prefix of no topic
    max_unknown_prefix_bytes: int = 1 << 20
    max_message_bytes: int = 1 << 20
    # Bytes of requests held (queued or running, kept for a retry): in all, and per client.
    # Counts alone let one client's 512 KiB requests for a service nobody serves hold 1 GB.
    max_held_bytes: int = 256 << 20
    max_client_bytes: int = 64 << 20
    balance: str = "lru"  # or "least-done"
    drain_timeout_s: float = 10.0
    # Messages queued per peer connection, each way. A client that stops reading loses the
    # replies beyond this (counted as undeliverable) instead of growing our memory.
    hwm: int = 100_000
    max_names: int = 100_000  # worker names bound to the key that first claimed each


BALANCES = ("lru", "least-done")


class Outgoing(NamedTuple):
    """A message for the shell to send. `assigned_to` names the worker when the message hands
    it a task: if it cannot be delivered, that worker is buried and the task retried."""

    route: Route
    frames: list[bytes]
    assigned_to: bytes | None = None


@dataclass(slots=True)
class Task:
    id: int
    client: bytes
    route: Route
    delimited: bool
    service: bytes  # as requested, echoed in the reply
    want: mdp.ServiceRequest
    body: list[bytes]
    expires_at: float
    queued_at: float
    attempts: int = 0
    not_before: float = 0.0
    started_at: float = 0.0
    size: int = 0  # the bytes it holds, counted against max_held_bytes and max_client_bytes
    version: int = 2  # the MDP version the client spoke: its replies go back in it


@dataclass(slots=True)
class Worker:
    identity: bytes
    route: Route
    service: bytes
    tags: frozenset[str]
    delimited: bool
    liveness: Liveness
    task: Task | None = None
    check_at: float = float("inf")  # when the earliest pending liveness check fires
    done: int = 0
    failed: int = 0
    key: str = ""  # the CurveZMQ key it came with ("" without keys)
    version: int = 2  # the MDP version it spoke: everything to it goes in that version

    @property
    def name(self) -> str:
        """The identity as text when it is printable (a --name), else as hex."""
        text = self.identity.decode("ascii", errors="replace")
        return text if self.identity.isascii() and text.isprintable() else self.identity.hex()


@dataclass
class Service:
    queue: deque[Task] = field(default_factory=deque)
    idle: OrderedDict[bytes, Worker] = field(default_factory=OrderedDict)  # longest idle first


class CoordinatorCore:
    def __init__(self, config: Config | None = None) -> None:
        self.cfg = config or Config()
        self.outbox: list[Outgoing] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.subscriptions: set[bytes] = set()
        self.wanted: dict[str, bool] = {}  # topic -> does any subscription cover it
        self.unknown_prefixes = 0  # subscribed prefixes of no topic, since the socket opened
        self.unknown_prefix_bytes = 0  # and their bytes
        self.names: dict[bytes, str] = {}  # worker name -> the key that first claimed it
        self.held_bytes = 0  # of the requests queued or running
        self.client_bytes: dict[bytes, int] = {}  # the same, per client that has any
        self.workers: dict[bytes, Worker] = {}
        self.services: dict[bytes, Service] = {}
        self.timers: list[tuple[float, Timer, bytes]] = []  # lazily rechecked when they fire
        self.counters: Counter[str] = Counter()
        self.next_task_id = 0
        self.draining_since: float | None = None
        self.next_stats = 0.0

    # -- input ------------------------------------------------------------------------------

    def handle(
        self,
        route: Route,
        frames: list[bytes],
        now: float,
        *,
        key: str = "",
        roles: frozenset[str] = ROLES,
    ) -> None:
        """A message as a ROUTER socket delivered it: the sender's identity first; `key` is
        the sender's CurveZMQ key and `roles` what authorized_keys lets it do (all, without
        keys). A client key cannot register as a worker, nor a worker key queue work."""
        if sum(map(len, frames)) > self.cfg.max_message_bytes:
            self.counters["dropped.oversized"] += 1
            return
        try:
            msg = mdp.parse_at_broker(frames)
        except mdp.ProtocolError as exc:
            self.counters[f"dropped.{exc.kind}"] += 1
            return
        if msg.header == mdp.CLIENT:
            if "client" not in roles:
                self.counters["refused.no-client-role"] += 1
                error = mdp.error_body(msg.frames[1:], "this key may not send requests")
                reply = mdp.to_client(
                    msg.sender, msg.delimited, mdp.C_FINAL, msg.frames[0], *error,
                    version=msg.version,
                )  # fmt: skip
                self.outbox.append(Outgoing(route, reply))
                return
            self.on_client(route, msg, now)
        else:
            self.on_worker(route, msg, now, key, roles)

    def revoked(self, route: Route, frames: list[bytes], now: float) -> None:
        """A message from a key no longer in authorized_keys: nothing it sends is taken, and a
        worker it was is forgotten now (told DISCONNECT; its task goes to another)."""
        self.counters["refused.revoked"] += 1
        worker = self.workers.get(frames[0]) if frames else None
        if worker is not None and worker.route == route:
            self.bury(worker, now, "key revoked")

    def keys_changed(self, allowed: Callable[[str], bool], now: float) -> None:
        """authorized_keys changed: every worker whose key it no longer lists is forgotten,
        silent ones included, and the names such keys claimed are free again."""
        for worker in [w for w in self.workers.values() if w.key and not allowed(w.key)]:
            self.bury(worker, now, "key revoked")
        self.names = {name: key for name, key in self.names.items() if allowed(key)}

    def subscription(self, message: bytes) -> bool:
        """What XPUB reports: b"\x01" + prefix to subscribe, b"\x00" + prefix to leave.

        Returns True when the shell should reopen the events socket: libzmq keeps every prefix
        a subscriber sends (100,000 random ones cost 100 MiB) and can neither refuse one nor
        drop one subscriber, so past max_unknown_prefixes that no topic starts with, the socket
        is closed and opened again (its subscribers reconnect and subscribe again), which
        frees them all. Only prefixes of real topics are remembered here.
        """
        prefix = message[1:]
        if prefix not in SUBSCRIBABLE:
            if message[:1] == b"\x01":
                self.unknown_prefixes += 1
                self.unknown_prefix_bytes += len(prefix)
                self.counters["subscriptions.unknown"] += 1
            return (
                self.unknown_prefixes > self.cfg.max_unknown_prefixes
                or self.unknown_prefix_bytes > self.cfg.max_unknown_prefix_bytes
            )
        if message[:1] == b"\x01":
            self.subscriptions.add(prefix)
        else:
            self.subscriptions.discard(prefix)
        self.wanted.clear()
        return False

    def events_reopened(self) -> None:
        """The shell opened a fresh events socket: nobody is subscribed until they say so."""
        self.unknown_prefixes = self.unknown_prefix_bytes = 0
        self.subscriptions.clear()
        self.wanted.clear()
        self.counters["events.reopened"] += 1

    def undeliverable(self, out: Outgoing, reason: str, now: float, *, gone: bool = False) -> None:
        """The shell could not send `out`: the peer is `gone` (the ROUTER no longer routes to
        it, EHOSTUNREACH), or not keeping up. A task that cannot be handed over is retried
        elsewhere either way; any message to a worker that is gone, a heartbeat included, buries
        it now rather than after its silence (a busy worker's can be a minute)."""
        self.counters[f"undeliverable.{reason}"] += 1
        if out.assigned_to is not None:
            worker = self.workers.get(out.assigned_to)
            if worker is not None and worker.task is not None:
                self.bury(worker, now, "unreachable")
            return
        worker = self.workers.get(out.frames[0]) if gone and out.frames else None
        if worker is not None and worker.route == out.route:
            self.bury(worker, now, "unreachable")

    def take_outbox(self) -> list[Outgoing]:
        out, self.outbox = self.outbox, []
        return out

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        events, self.events = self.events, []
        return events

    # -- clients ----------------------------------------------------------------------------

    def on_client(self, route: Route, msg: mdp.Inbound, now: float) -> None:
        self.counters["requests"] += 1
        name, body = msg.frames[0], msg.frames[1:]
        if name.startswith(mdp.MMI_PREFIX):
            reply = mdp.to_client(
                msg.sender, msg.delimited, mdp.C_FINAL, name, self.mmi(name, body),
                version=msg.version,
            )  # fmt: skip
            self.outbox.append(Outgoing(route, reply))
            return
        want = mdp.parse_service_name(name)
        reason = "coordinator draining" if self.draining_since is not None else None
        known = want.service in self.services
        if reason is None and not known and len(self.services) >= self.cfg.max_services:
            reason = f"too many services ({self.cfg.max_services}) have work waiting"
        queue = self.service(want.service).queue if reason is None else deque()
        if reason is None and len(queue) >= self.cfg.max_queue:
            reason = f"queue for {want.service.decode(errors='replace')} is full"
        size = len(name) + sum(len(frame) for frame in body)
        if reason is None:
            reason = self._over_bytes(msg.sender, size)
        if reason:
            self.counters["rejected"] += 1
            error = mdp.error_body(body, reason)
            reply = mdp.to_client(
                msg.sender, msg.delimited, mdp.C_FINAL, name, *error, version=msg.version
            )
            self.outbox.append(Outgoing(route, reply))
            return
        self.next_task_id += 1
        task = Task(
            self.next_task_id,
            msg.sender,
            route,
            msg.delimited,
            name,
            want,
            body,
            expires_at=now + self.cfg.service_timeout_s,
            queued_at=now,
            size=size,
            version=msg.version,
        )
        self._hold(task, +1)
        queue.append(task)
        self.publish("task.queued", task=task.id, service=name.decode(errors="replace"))
        self.dispatch(want.service, now)

    def _over_bytes(self, client: bytes, size: int) -> str | None:
        """Which byte limit a request of `size` would pass, if any."""
        if self.held_bytes + size > self.cfg.max_held_bytes:
            mib = self.cfg.max_held_bytes >> 20
            return f"the coordinator holds its --max-held-mib ({mib}) of requests"
        if self.client_bytes.get(client, 0) + size > self.cfg.max_client_bytes:
            mib = self.cfg.max_client_bytes >> 20
            return f"this client has its --max-client-mib ({mib}) of requests waiting or running"
        return None

    def _hold(self, task: Task, sign: int) -> None:
        """Count a task's bytes in (+1, when it is accepted) or out (-1, when it ends: its
        final reply, or its error reply)."""
        self.held_bytes += sign * task.size
        held = self.client_bytes.get(task.client, 0) + sign * task.size
        if held:
            self.client_bytes[task.client] = held
        else:
            self.client_bytes.pop(task.client, None)  # only clients with work are remembered

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
        self._hold(task, -1)
        error = mdp.error_body(task.body, reason)
        reply = mdp.to_client(
            task.client, task.delimited, mdp.C_FINAL, task.service, *error, version=task.version
        )
        self.outbox.append(Outgoing(task.route, reply))
        self.publish(topic, task=task.id, reason=reason, attempts=task.attempts)

    # -- workers ----------------------------------------------------------------------------

    def on_worker(
        self,
        route: Route,
        msg: mdp.Inbound,
        now: float,
        key: str = "",
        roles: frozenset[str] = ROLES,
    ) -> None:
        worker = self.workers.get(msg.sender)
        if msg.command == mdp.W_READY:
            refusal = self._may_register(msg.sender, key, roles)
            if refusal is not None:
                self.counters[f"refused.{refusal}"] += 1
                disconnect = mdp.to_worker(
                    msg.sender, msg.delimited, mdp.W_DISCONNECT, version=msg.version
                )
                self.outbox.append(Outgoing(route, disconnect))
                return
            if worker is not None:  # the same identity came back: its old self is gone
                self.bury(worker, now, "re-registered")
            self.register(route, msg, now, key)
            return
        if worker is not None and worker.key != key:  # not the connection that registered
            self.counters["refused.not-its-key"] += 1
            return
        if worker is None:
            self.counters["unexpected.unknown-worker"] += 1
            if msg.command in (mdp.W_PARTIAL, mdp.W_FINAL):  # from a worker we declared dead
                self.counters["dropped.late-result"] += 1
            if msg.command != mdp.W_DISCONNECT:
                disconnect = mdp.to_worker(
                    msg.sender, msg.delimited, mdp.W_DISCONNECT, version=msg.version
                )
                self.outbox.append(Outgoing(route, disconnect))
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
            self.bury(worker, now, "protocol violation")  # which tells it DISCONNECT

    @staticmethod
    def _holds(worker: Worker, client: bytes) -> bool:
        return worker.task is not None and worker.task.client == client

    def _may_register(self, name: bytes, key: str, roles: frozenset[str]) -> str | None:
        """Why this key may not take this worker name, if it may not: no worker role, or the
        name is another key's (bound to the key that first claimed it, so while worker1
        restarts another key cannot take worker1's tasks)."""
        if "worker" not in roles:
            return "no-worker-role"
        if not key:
            return None  # without keys there is nothing to bind a name to
        claimed = self.names.get(name)
        if claimed is not None and claimed != key:
            return "name-taken"
        if claimed is None:
            if len(self.names) >= self.cfg.max_names:  # forget the names nobody holds now
                self.names = {n: k for n, k in self.names.items() if n in self.workers}
            if len(self.names) >= self.cfg.max_names:
                return "too-many-names"
            self.names[name] = key
        return None

    def register(self, route: Route, msg: mdp.Inbound, now: float, key: str = "") -> None:
        announced = mdp.parse_service_name(msg.frames[0])
        if announced.service.startswith(mdp.MMI_PREFIX) or announced.pinned:
            self.counters["dropped.bad-ready"] += 1
            return
        liveness = Liveness(now, liveness=self.cfg.liveness)
        worker = Worker(
            msg.sender,
            route,
            announced.service,
            announced.tags,
            msg.delimited,
            liveness,
            key=key,
            version=msg.version,
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
        if task is None:  # _holds() checked it; kept as a guard that survives `python -O`
            return
        command = mdp.C_PARTIAL if msg.command == mdp.W_PARTIAL else mdp.C_FINAL
        error = mdp.error_reason(msg.frames[2:])
        if command == mdp.C_FINAL:  # counted before the reply leaves: whoever sees it sees these
            worker.done += 1
            worker.failed += error is not None
            self.counters["replies"] += 1
        if command == mdp.C_PARTIAL and task.version == 1:  # MDP/0.1 has the FINAL alone
            self.counters["dropped.partial-to-mdp01-client"] += 1
            return
        reply = mdp.to_client(
            task.client, task.delimited, command, task.service, *msg.frames[2:],
            version=task.version,
        )  # fmt: skip
        self.outbox.append(Outgoing(task.route, reply))
        if command == mdp.C_PARTIAL:
            return
        self._hold(task, -1)
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
        if worker.service in self.services:
            self.services[worker.service].idle.pop(worker.identity, None)
        if topic == "worker.dead":  # if it is only frozen, it will reconnect when it wakes
            disconnect = mdp.to_worker(
                worker.identity, worker.delimited, mdp.W_DISCONNECT, version=worker.version
            )
            self.outbox.append(Outgoing(worker.route, disconnect))
        self.publish(
            topic, worker=worker.name, reason=reason, silence=now - worker.liveness.last_heard
        )
        if worker.task is not None:
            task, worker.task = worker.task, None
            self.retry(task, now, f"worker {worker.name} {reason}")

    def retry(self, task: Task, now: float, reason: str) -> None:
        if task.attempts > self.cfg.max_retries:
            self.reply_error(
                task, f"gave up after {task.attempts} attempts: {reason}", "task.failed"
            )
            return
        backoff = Backoff(initial_s=RETRY_BACKOFF_INITIAL_S, cap_s=RETRY_BACKOFF_CAP_S)
        backoff.attempts = task.attempts - 1
        task.not_before = now + backoff.next_delay()
        task.expires_at = now + self.cfg.service_timeout_s
        self.service(task.want.service).queue.appendleft(task)  # it has waited longest
        self.publish("task.retried", task=task.id, attempts=task.attempts, reason=reason)

    # -- matching work to workers -----------------------------------------------------------

    def dispatch(self, service_name: bytes, now: float) -> None:
        service = self.services.get(service_name)
        if service is None or not service.queue or not service.idle:
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
            worker.identity, worker.delimited, mdp.W_REQUEST, task.client, b"", *task.body,
            version=worker.version,
        )  # fmt: skip
        self.outbox.append(Outgoing(worker.route, frames, assigned_to=worker.identity))
        self.publish("task.assigned", task=task.id, worker=worker.name, attempt=task.attempts)

    # -- timers -----------------------------------------------------------------------------

    def _watch(self, worker: Worker, now: float) -> None:
        self._schedule_check(worker)
        beat_at = now + self._beat_interval(worker)
        heapq.heappush(self.timers, (beat_at, Timer.SEND_HEARTBEAT, worker.identity))

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
            heapq.heappush(self.timers, (deadline, Timer.CHECK_ALIVE, worker.identity))

    def _beat_interval(self, worker: Worker) -> float:
        # Beat back at the worker's own rhythm: a 1 Hz worker does not need 4 beats a second.
        return max(self.cfg.heartbeat_s, worker.liveness.interval or self.cfg.heartbeat_s)

    def tick(self, now: float) -> None:
        """Fire due timers, expire and dispatch queued requests, publish stats when due."""
        while self.timers and self.timers[0][0] <= now:
            when, kind, identity = heapq.heappop(self.timers)
            worker = self.workers.get(identity)
            if worker is None:
                continue  # a timer of a worker already gone
            if kind == Timer.CHECK_ALIVE:
                if when == worker.check_at:  # superseded checks are dropped here
                    self._check_alive(worker, now)
            else:
                beat = mdp.to_worker(
                    identity, worker.delimited, mdp.W_HEARTBEAT, version=worker.version
                )
                self.outbox.append(Outgoing(worker.route, beat))
                beat_at = now + self._beat_interval(worker)
                heapq.heappush(self.timers, (beat_at, Timer.SEND_HEARTBEAT, identity))
        for name, service in list(self.services.items()):
            self._expire(service, now)
            self.dispatch(name, now)  # tasks whose back-off has passed
            if not service.queue and not service.idle:
                # Nothing waits and nobody is idle: forget it (it comes back with its next
                # request or its next idle worker), so a client inventing names cannot make
                # us remember, and walk, every name it ever sent.
                del self.services[name]
        if now >= self.next_stats:
            self.next_stats = now + STATS_INTERVAL_S
            self.publish("stats", **self.snapshot(now))

    def _check_alive(self, worker: Worker, now: float) -> None:
        # At the deadline itself the allowance has run out: `>` here re-armed the same timer at
        # `now` and tick() popped it forever (found by the fake-clock tests).
        if now >= self._deadline(worker):
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

    # -- draining ---------------------------------------------------------------------------

    def request_drain(self, now: float) -> None:
        """Stop taking work; running tasks may finish within drain_timeout_s."""
        if self.draining_since is None:
            self.draining_since = now

    def drained(self, now: float) -> bool:
        """While draining: fail what is queued; True once nothing is running (or time is up)."""
        for service in self.services.values():
            while service.queue:
                self.reply_error(service.queue.popleft(), "coordinator draining", "task.failed")
        busy = [w for w in self.workers.values() if w.task is not None]
        if busy and now - (self.draining_since or now) < self.cfg.drain_timeout_s:
            return False
        for worker in busy:
            if worker.task is not None:
                self.reply_error(
                    worker.task, "coordinator stopped before the task finished", "task.failed"
                )
                worker.task = None
        return True

    def goodbye(self) -> None:
        """Tell every worker to find the next coordinator."""
        for worker in self.workers.values():
            disconnect = mdp.to_worker(
                worker.identity, worker.delimited, mdp.W_DISCONNECT, version=worker.version
            )
            self.outbox.append(Outgoing(worker.route, disconnect))
        self.publish("broker.stopped", counters=dict(self.counters))

    # -- output -----------------------------------------------------------------------------

    def publish(self, topic: str, **fields: Any) -> None:
        """Queue an event for the monitor, only if some subscription covers its topic."""
        wanted = self.wanted.get(topic)
        if wanted is None:
            encoded = topic.encode()
            wanted = self.wanted[topic] = any(encoded.startswith(p) for p in self.subscriptions)
        if wanted:
            self.events.append((topic, fields))

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
            "service_count": len(self.services),
            "queued": sum(len(s.queue) for s in self.services.values()),
            "in_flight": sum(1 for w in self.workers.values() if w.task),
            "counters": dict(self.counters),
        }
