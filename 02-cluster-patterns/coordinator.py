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

Who may connect: with --keys every socket (peers and events) is a CurveZMQ server and only
keys in its authorized_keys complete the handshake (curve.py, the same model as step 03's
agent), every message is checked against the file as it stands now (a revoked worker is
dropped at once), and a line's roles= (client, worker, monitor) says what that key may do; a
worker name stays with the key that first claimed it. Without keys anyone who reaches the
port can queue work, take tasks and read every event, so it refuses to start unless told
--insecure (the lessons on one machine). Either way a connection can never take the name of a
live worker: ROUTER_HANDOVER is off, so a second peer calling itself worker1 is ignored while
worker1 is connected.

This file is the I/O shell: sockets, the poll loop, signals and the command line. Every
decision is made by the state machine in coordinator_core.py, which has no sockets; read that
first to learn what the broker does, and this file to see how ZeroMQ feeds it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from cluster_patterns.coordinator_core import (
    BACKEND,
    BALANCES,
    FRONTEND,
    LONGEST_TOPIC,
    Config,
    CoordinatorCore,
    Outgoing,
)
from zcl import cli, curve
from zcl.errors import CliError
from zcl.wire import recv_now, recv_now_as, send_now

__all__ = ["Config", "Coordinator", "main"]

log = logging.getLogger("coordinator")
HOUSEKEEPING_S = 0.05  # the longest the loop sleeps before checking its timers
TRIMS_AFTER_REOPEN = 40  # ticks (2 s) after reopening the events socket that trim the heap
EVENTS_HWM = 20_000  # events queued per subscriber: a few megabytes at most
EVENTS_DOMAIN = b"events"  # the events socket's ZAP domain: a key needs the monitor role
EVENTS_MESSAGE_BYTES = 1024  # the longest message a subscriber may send (see _events_socket)
RECV_BATCH = 1000  # messages taken from one socket before the timers get a look in


class Coordinator:
    """The core's sockets: one or two ROUTERs for peers, an XPUB for the monitor."""

    def __init__(
        self,
        ctx: cli.Ctx,
        endpoint: str,
        events: str,
        worker_endpoint: str | None = None,
        config: Config | None = None,
        *,
        keys: curve.AgentKeys | None = None,
    ) -> None:
        """With `keys`, start a ZAP handler on `ctx` first (curve.start_authenticator)."""
        self.keys = keys
        self.core = CoordinatorCore(config)
        # With keys, every message's sender is checked against authorized_keys as it stands
        # now (not only at the handshake) and its roles handed to the core.
        self.authorized = None
        if keys is not None:
            self.authorized = curve.AuthorizedKeys(keys.authorized_keys, self.core.counters)
            self.authorized.refresh()
        self.keys_seen = 0 if self.authorized is None else self.authorized.generation
        self.cfg = self.core.cfg
        self.routers = {FRONTEND: self._router(ctx)}  # route number -> socket
        self.endpoints = [cli.bind(self.routers[FRONTEND], endpoint)]
        if worker_endpoint:
            self.routers[BACKEND] = self._router(ctx)
            self.endpoints.append(cli.bind(self.routers[BACKEND], worker_endpoint))
        self.ctx = ctx
        self.events = self._events_socket()
        self.events_endpoint = cli.bind(self.events, events)
        self.events_bound = True
        self.stop = threading.Event()
        self.drain_requested = False
        self.next_housekeeping = 0.0
        self.trims_left = 0  # housekeeping ticks that still hand freed memory back

    @property
    def counters(self) -> Counter[str]:
        """A copy: read it from another thread only once the loop has stopped."""
        return Counter(self.core.counters)

    def _events_socket(self) -> cli.Sock:
        # XPUB rather than PUB: it tells us which topic prefixes anyone subscribed to, so an
        # event nobody listens for is never even serialised.
        sock = self.ctx.socket(zmq.XPUB)
        sock.linger = 0
        # Each subscriber may fall this far behind before events for it are dropped (PUB
        # drops rather than block the broker); a busy cluster publishes thousands a second.
        sock.sndhwm = EVENTS_HWM
        sock.zap_domain = EVENTS_DOMAIN  # where the ZAP handler asks for the monitor role
        # A subscription longer than any topic can match nothing, and libzmq would store it
        # (a node per byte: a 1 MiB prefix held 47 MB, never given back, and tearing that
        # trie down recurses a level per byte): a longer message drops its sender instead.
        # The limit covers the handshake's commands too (CurveZMQ's INITIATE is about 300
        # bytes), hence 1 KiB; the core bounds the bytes of shorter prefixes of no topic.
        sock.maxmsgsize = max(EVENTS_MESSAGE_BYTES, 1 + LONGEST_TOPIC)
        cli.serve_strangers_briefly(sock)
        if self.keys is not None:
            curve.serve_curve(sock, self.keys)
        return sock

    def _reopen_events(self, poller: zmq.Poller) -> None:
        """A fresh events socket on the same endpoint (see CoordinatorCore.subscription)."""
        log.warning(
            "subscribers sent over %d prefixes of no topic: reopening the events socket",
            self.cfg.max_unknown_prefixes,
        )
        poller.unregister(self.events)
        self.events.close()
        self.events = self._events_socket()
        self.events_bound = self._bind_events()
        poller.register(self.events, zmq.POLLIN)
        self.core.events_reopened()
        # libzmq frees the old socket's prefixes in its I/O thread, a little later: the freed
        # memory is handed back to the system over the next few ticks.
        self.trims_left = TRIMS_AFTER_REOPEN

    def _bind_events(self, patience_s: float = 1.0) -> bool:
        """Bind the fresh events socket where the old one was. libzmq closes a listener in
        its I/O thread, after close() returns, so the port may be busy for a moment; past
        `patience_s` the loop tries again at each tick rather than stop the broker."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                self.events.bind(self.events_endpoint)
                return True
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    log.error("events socket not bound yet (%s); trying again", cli.reason(exc))
                    return False
                time.sleep(0.01)  # the old listener is on its way out: nothing to wait on

    def _router(self, ctx: cli.Ctx) -> cli.Sock:
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.router_mandatory = True  # an unroutable reply raises instead of vanishing
        # No ROUTER_HANDOVER: with it, any new connection naming itself worker1 would take
        # over the live worker1's route and receive its tasks. A restarted worker's new
        # connection is accepted once the old one is gone, which ZMTP heartbeats make sure of
        # even when the old one died silently (a cut cable, a frozen host). A connection that
        # answers no ZMTP ping for a second is closed (libzmq answers them itself, so a busy
        # worker always does): a partitioned worker's old connection is gone by the time the
        # network heals, and its name free for the connection it makes then. (With 5 s, the
        # old one lived on until TCP's backed-off retransmission met the worker's RST, and a
        # healed worker came back 2-7 s after the heal.)
        sock.router_handover = False
        sock.heartbeat_ivl, sock.heartbeat_timeout = 250, 1000  # milliseconds
        if self.keys is not None:
            curve.serve_curve(sock, self.keys)
        sock.maxmsgsize = self.cfg.max_message_bytes * 2  # libzmq cuts off grossly oversized peers
        sock.sndhwm = sock.rcvhwm = self.cfg.hwm
        sock.backlog = 1024  # thousands of workers connect at once after a restart
        cli.serve_strangers_briefly(sock)
        return sock

    def run(self) -> None:
        poller = zmq.Poller()
        by_socket = {sock: route for route, sock in self.routers.items()}
        for sock in (*self.routers.values(), self.events):
            poller.register(sock, zmq.POLLIN)
        self.core.publish("broker.started", endpoints=self.endpoints)
        self.flush(time.monotonic())
        while not self.stop.is_set():
            now = time.monotonic()
            wait_s = min(HOUSEKEEPING_S, self.next_housekeeping - now)
            for sock, _ in poller.poll(max(0, int(wait_s * 1000))):
                if sock is self.events:
                    while self.events.poll(0):
                        if self.core.subscription(self.events.recv()):
                            self._reopen_events(poller)
                            break
                else:
                    self._read(sock, by_socket[sock])
            now = time.monotonic()
            if self.drain_requested:
                self.core.request_drain(now)
            if now >= self.next_housekeeping:
                self.next_housekeeping = now + HOUSEKEEPING_S
                self.core.tick(now)
                if self.trims_left:
                    self.trims_left -= 1
                    cli.give_back_freed_memory()
                if not self.events_bound:
                    self.events_bound = self._bind_events(patience_s=0)
            done = self.core.draining_since is not None and self.core.drained(now)
            self.flush(now)
            if done:
                break
        self.core.goodbye()
        self.flush(time.monotonic())

    def _read(self, sock: cli.Sock, route: int) -> None:
        # recv_now is recv_multipart without blocking, written for speed (wire.py says
        # why); a plain loop would be `frames = sock.recv_multipart(zmq.NOBLOCK)`.
        authorized = self.authorized
        if authorized is not None:
            authorized.refresh()
            if authorized.generation != self.keys_seen:  # a key added, revoked, its roles changed
                self.keys_seen = authorized.generation
                self.core.keys_changed(authorized.allows, time.monotonic())
        for _ in range(RECV_BATCH):  # bounded, so one busy socket cannot starve the timers
            try:
                frames, key = recv_now_as(sock) if authorized else (recv_now(sock), "")
            except zmq.Again:
                return
            now = time.monotonic()
            try:
                if authorized is None:
                    self.core.handle(route, frames, now)
                elif not authorized.allows(key):
                    self.core.revoked(route, frames, now)
                else:
                    roles = frozenset(r for r in curve.ROLES if authorized.may(key, r))
                    self.core.handle(route, frames, now, key=key, roles=roles)
            except Exception:  # one bad message must never take the coordinator down
                log.exception("internal error while handling a message; message dropped")
                self.core.counters["dropped.internal-error"] += 1
            self.flush(now)

    def flush(self, now: float) -> None:
        """Send what the core decided; tell it what could not be delivered (which may make it
        decide more, such as retrying a task whose worker vanished)."""
        while self.core.outbox or self.core.events:
            for out in self.core.take_outbox():
                self._send(out, now)
            for topic, fields in self.core.take_events():
                self._publish(topic, fields)

    def _send(self, out: Outgoing, now: float) -> None:
        try:
            send_now(self.routers[out.route], out.frames)
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or not keeping up (EAGAIN)
            gone = exc.errno == zmq.EHOSTUNREACH
            self.core.undeliverable(out, cli.reason(exc), now, gone=gone)

    def _publish(self, topic: str, fields: dict[str, Any]) -> None:
        if topic == "stats":
            fields["pid"] = os.getpid()
        payload = json.dumps({"ts": time.time(), **fields}).encode()
        try:
            send_now(self.events, [topic.encode(), payload])
        except zmq.ZMQError as exc:
            self.core.counters[f"undeliverable.{cli.reason(exc)}"] += 1

    def request_drain(self) -> None:
        """Called from the signal handler: only flags; the loop does the work."""
        self.drain_requested = True


def cmd_run(args: argparse.Namespace) -> int:
    config = Config(
        heartbeat_s=args.heartbeat,
        busy_timeout_s=args.busy_timeout,
        liveness=args.liveness,
        max_retries=args.max_retries,
        service_timeout_s=args.service_timeout,
        max_queue=args.max_queue,
        max_services=args.max_services,
        max_unknown_prefixes=args.max_unknown_prefixes,
        max_message_bytes=args.max_message_bytes,
        max_held_bytes=args.max_held_mib << 20,
        max_client_bytes=args.max_client_mib << 20,
        balance=args.balance,
        drain_timeout_s=args.drain_timeout,
        quiet_when_busy=frozenset(s.encode() for s in args.quiet_when_busy),
    )
    if args.keys is None and not args.insecure:
        raise CliError("give --keys SERVER_KEY_DIR, or --insecure to run without CurveZMQ")
    keys = None if args.keys is None else curve.load_agent_keys(args.keys)
    log.info("open files: up to %d", cli.raise_open_file_limit())
    with zmq.Context() as ctx:
        monitors_only = {EVENTS_DOMAIN.decode(): "monitor"}
        auth = None if keys is None else curve.start_authenticator(ctx, keys, monitors_only)
        try:
            return _serve(ctx, args, config, keys)
        finally:
            if auth is not None:
                auth.stop()


def _serve(
    ctx: cli.Ctx, args: argparse.Namespace, config: Config, keys: curve.AgentKeys | None
) -> int:
    if keys is None:
        log.warning("CurveZMQ is OFF (--insecure): anyone who reaches the ports can use them")
    coordinator = Coordinator(
        ctx, args.endpoint, args.events, args.worker_endpoint, config, keys=keys
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "zcl-coordinator")
    default = Config()  # the one place each default is written
    cli.add_endpoint(parser, "--endpoint", "COORDINATOR_ENDPOINT", "tcp://127.0.0.1:5555")
    cli.add_endpoint(parser, "--events", "COORDINATOR_EVENTS", "tcp://127.0.0.1:5556")
    parser.add_argument("--worker-endpoint", type=cli.endpoint, help="a separate one for workers")
    parser.add_argument(
        "--keys",
        type=Path,
        default=os.environ.get("ZCL_COORDINATOR_KEYS"),
        metavar="DIR",
        help="the coordinator's key folder, with host.key_secret and authorized_keys "
        "(zcl-keys generate KEYDIR --nodes coordinator ...; $ZCL_COORDINATOR_KEYS)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="no CurveZMQ: lessons on one machine only"
    )
    parser.add_argument("--heartbeat", type=float, default=default.heartbeat_s, help="seconds")
    parser.add_argument(
        "--liveness", type=float, default=default.liveness, help="silent intervals = dead"
    )
    parser.add_argument("--max-retries", type=int, default=default.max_retries)
    parser.add_argument(
        "--service-timeout",
        type=float,
        default=default.service_timeout_s,
        help="seconds a request waits",
    )
    parser.add_argument("--max-queue", type=cli.positive_int, default=default.max_queue)
    parser.add_argument(
        "--max-services",
        type=cli.positive_int,
        default=default.max_services,
        help="services with work waiting or a worker idle, at once; requests for more are "
        f"refused (default {default.max_services})",
    )
    parser.add_argument(
        "--max-message-bytes", type=cli.positive_int, default=default.max_message_bytes
    )
    parser.add_argument(
        "--max-unknown-prefixes",
        type=cli.positive_int,
        default=default.max_unknown_prefixes,
        help="subscriptions to no topic before the events socket is reopened, freeing them "
        f"(default {default.max_unknown_prefixes:,})",
    )
    parser.add_argument(
        "--max-held-mib",
        type=cli.positive_int,
        default=default.max_held_bytes >> 20,
        help="bytes of requests queued or running, in all, before new ones are refused "
        f"(default {default.max_held_bytes >> 20} MiB)",
    )
    parser.add_argument(
        "--max-client-mib",
        type=cli.positive_int,
        default=default.max_client_bytes >> 20,
        help=f"the same for one client (default {default.max_client_bytes >> 20} MiB)",
    )
    parser.add_argument("--balance", choices=BALANCES, default=default.balance)
    parser.add_argument("--drain-timeout", type=float, default=default.drain_timeout_s)
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
        default=default.busy_timeout_s,
        help="seconds such a worker may stay silent with a task",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    raise SystemExit(main())
