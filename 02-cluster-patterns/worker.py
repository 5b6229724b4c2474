"""An MDP/0.2 worker: serves one service, keeps heartbeating while it works, and comes back.

Built-in services (the body's first frame is the request's correlation id, echoed back):
  echo    returns the request body frames unchanged
  sleep   {"seconds": S} -> {"slept": S}         (something that takes time)
  fail    raises, to exercise error replies       (a task that raises never kills the worker)
  shell   {"cmd": "...", "timeout": S} -> {"exit": N, "stdout": ..., "stderr": ...}
          off unless --allow-shell: it runs anything it is sent

The socket belongs to one loop thread; tasks that take time run on a second thread and hand
their result back over an inproc pipe, so heartbeats keep flowing while a task runs. The
worker reconnects on a new socket, after a randomised back-off, when the coordinator goes
silent or says DISCONNECT. Both waits are short on purpose, so that a worker rejoins within
about a second of a network healing: the back-off between sockets is capped at RECONNECT_CAP_S,
and within one socket libzmq dials again every RECONNECT_IVL_MS at most, each attempt given
CONNECT_TIMEOUT_MS (a SYN lost in a partition would otherwise be retried by TCP after 1, 3, 7 s
... and the worker rejoin seconds after the heal). SIGTERM lets the running task finish (up to
--drain-timeout), then sends DISCONNECT, which hands an unfinished task back to the coordinator,
and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import zmq

from cluster_patterns import protocol as mdp
from zcl import cli, curve
from zcl.errors import CliError
from zcl.heartbeat import OUR_INTERVAL_S, UNLEARNED_ALLOWANCE_S, Backoff, Liveness

RECONNECT_CAP_S = 0.6  # the longest back-off between sockets (randomised down to half)
RECONNECT_IVL_MS = 500  # libzmq's redial interval within one socket, at most
CONNECT_TIMEOUT_MS = 500  # one TCP connect attempt, before libzmq dials again

log = logging.getLogger("worker")
TASK_STARTED = "started a task"  # logged at debug level as each task begins
Handler = Callable[[list[bytes], mdp.Codec], list[bytes]]


def echo(body: list[bytes], codec: mdp.Codec) -> list[bytes]:
    return body


def sleep(body: list[bytes], codec: mdp.Codec) -> list[bytes]:
    seconds = float(codec.decode(body[1])["seconds"])
    time.sleep(seconds)  # the work itself
    return [body[0], codec.encode({"slept": seconds})]


def fail(body: list[bytes], codec: mdp.Codec) -> list[bytes]:
    raise RuntimeError("the fail service always fails")


def shell(body: list[bytes], codec: mdp.Codec) -> list[bytes]:
    args = codec.decode(body[1])
    done = subprocess.run(
        str(args["cmd"]),
        shell=True,
        capture_output=True,
        timeout=float(args.get("timeout", 60)),
        check=False,
        start_new_session=True,
    )
    result = {
        "exit": done.returncode,
        "stdout": done.stdout.decode(errors="replace"),
        "stderr": done.stderr.decode(errors="replace"),
    }
    return [body[0], codec.encode(result)]


SERVICES: dict[str, Handler] = {"echo": echo, "sleep": sleep, "fail": fail, "shell": shell}
INLINE = {"echo"}  # instant: answered on the loop thread, saving a thread hop per request


def run_handler(handler: Handler, body: list[bytes], codec: mdp.Codec) -> list[bytes]:
    """Run a service; any exception becomes an error reply instead of a dead worker."""
    try:
        return handler(body, codec)
    except Exception as exc:
        log.info("task failed: %s: %s", type(exc).__name__, exc)
        return mdp.error_body(body, f"{type(exc).__name__}: {exc}")


class TaskThread(threading.Thread):
    """Runs one task at a time off the loop thread; results come back over an inproc PAIR."""

    def __init__(self, ctx: cli.Ctx, address: str, handler: Handler, codec: mdp.Codec) -> None:
        super().__init__(name="task-runner", daemon=True)
        self.ctx, self.address, self.handler, self.codec = ctx, address, handler, codec
        self.jobs: queue.Queue[tuple[int, bytes, list[bytes]] | None] = queue.Queue()

    def run(self) -> None:
        with self.ctx.socket(zmq.PAIR) as pipe:
            pipe.linger = 0
            pipe.connect(self.address)
            while (job := self.jobs.get()) is not None:
                generation, client, body = job
                reply = run_handler(self.handler, body, self.codec)
                pipe.send_multipart([str(generation).encode(), client, *reply])


class Worker:
    def __init__(
        self,
        ctx: cli.Ctx,
        coordinator: str,
        service: str,
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
        heartbeat_s: float = OUR_INTERVAL_S,
        codec: str = "msgpack",
        drain_timeout_s: float = 30.0,
        framing: str = "spec",
        keys: curve.ControllerKeys | None = None,
    ) -> None:
        self.ctx, self.coordinator, self.service, self.name = ctx, coordinator, service, name
        self.keys = keys  # CurveZMQ, pinning the coordinator's key; None: a plain connection
        self.delimited, self.version = mdp.framing_form(framing)  # see protocol.FRAMINGS
        self.announce = service + (f"#{','.join(tags)}" if tags else "")
        self.heartbeat_s, self.drain_timeout_s = heartbeat_s, drain_timeout_s
        self.codec = mdp.get_codec(codec)
        self.handler = SERVICES[service]
        self.stop = threading.Event()
        self.backoff = Backoff(cap_s=RECONNECT_CAP_S)
        self.generation = 0  # bumped on every reconnect; results of older ones are stale
        self.busy_with: bytes | None = None  # client address of the running task
        self.sock: cli.Sock | None = None
        self.done = 0
        self.results = ctx.socket(zmq.PAIR)
        self.results.linger = 0
        address = f"inproc://worker-results-{id(self)}"
        self.results.bind(address)
        self.runner = TaskThread(ctx, address, self.handler, self.codec)

    def connect(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        self.generation += 1
        self.busy_with = None  # a task cut off by the reconnect is the coordinator's to requeue
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect_timeout = CONNECT_TIMEOUT_MS
        self.sock.reconnect_ivl, self.sock.reconnect_ivl_max = 100, RECONNECT_IVL_MS
        if self.name:
            self.sock.routing_id = self.name.encode()
        if self.keys is not None:
            curve.connect_curve(self.sock, self.keys, curve.COORDINATOR)
        cli.connect(self.sock, self.coordinator)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.results, zmq.POLLIN)
        self.send(mdp.W_READY, self.announce.encode())
        # The coordinator's rhythm, learned on the old socket, still holds: a new socket that
        # hears nothing is given up as soon as the old one would have been, not after the
        # unlearned allowance (7.5 s: a partition that began just before a reconnect kept a
        # healed worker away that long).
        # (A socket that heard nothing passes on what it was given, so the rhythm holds over
        # any number of reconnects in a row.)
        learned: Liveness | None = getattr(self, "broker", None)
        allowance = UNLEARNED_ALLOWANCE_S if learned is None else learned.allowed_silence
        self.broker = Liveness(time.monotonic(), unlearned_allowance_s=allowance)
        self.next_beat = time.monotonic() + self.heartbeat_s

    def live_socket(self) -> cli.Sock:
        if self.sock is None:  # a bug of ours: every path connects before it talks
            raise RuntimeError("the worker used its socket before connecting")
        return self.sock

    def send(self, command: bytes, *frames: bytes) -> None:
        try:
            message = mdp.from_worker(
                command, *frames, delimited=self.delimited, version=self.version
            )
            self.live_socket().send_multipart(message, zmq.NOBLOCK)
        except zmq.Again:  # the coordinator is not reading: it will requeue what we could not send
            log.warning(
                "coordinator not keeping up: dropped a %s", mdp.WORKER_COMMAND_NAMES[command]
            )

    def run(self) -> None:
        self.runner.start()
        try:
            self.connect()
            cli.announce_ready(f"worker {self.name or self.service}", self.coordinator)
            self._loop()
        finally:
            self.runner.jobs.put(None)
            self.runner.join(timeout=self.drain_timeout_s)
            if self.sock is not None:
                self.sock.close(linger=0)
            self.results.close()

    def _loop(self) -> None:
        stop_deadline: float | None = None
        while True:
            sock = self.live_socket()
            wait_ms = max(0, int((self.next_beat - time.monotonic()) * 1000))
            ready = dict(self.poller.poll(wait_ms))
            if self.results in ready:
                self.on_result(self.results.recv_multipart())
            if sock in ready and not self.on_message(sock.recv_multipart()):
                self.reconnect()
                continue
            now = time.monotonic()
            if self.stop.is_set():
                stop_deadline = stop_deadline or now + self.drain_timeout_s
                if self.busy_with is None or now > stop_deadline:
                    self.send(mdp.W_DISCONNECT)  # hands back a task we could not finish
                    log.info("worker stopped after %d tasks", self.done)
                    return
            if now >= self.next_beat:  # a fixed rhythm, busy or not, so the coordinator learns it
                self.send(mdp.W_HEARTBEAT)
                self.next_beat = now + self.heartbeat_s
            if self.broker.is_dead(now):
                log.warning(
                    "coordinator silent for %.2fs: reconnecting", now - self.broker.last_heard
                )
                self.reconnect()

    def on_message(self, frames: list[bytes]) -> bool:
        """Handle one message from the coordinator; False means: reconnect."""
        try:
            command, body = mdp.parse_at_worker(frames)
        except mdp.ProtocolError as exc:
            log.warning("dropped a bad message from the coordinator: %s", exc)
            return True
        self.broker.heard(time.monotonic(), is_heartbeat=command == mdp.W_HEARTBEAT)
        self.backoff.reset()
        if command == mdp.W_DISCONNECT:
            log.info("coordinator said DISCONNECT")
            return False
        if command == mdp.W_REQUEST and self.busy_with is None and not self.stop.is_set():
            client, request = body[0], body[2:]
            if self.service in INLINE:
                self.reply(client, run_handler(self.handler, request, self.codec))
            else:
                self.busy_with = client
                self.runner.jobs.put((self.generation, client, request))
                log.debug(TASK_STARTED)  # local_cluster freezes a worker in the middle of one
        elif command == mdp.W_REQUEST:  # busy or stopping: the spec gives us no other refusal
            log.warning("request while busy or stopping: disconnecting to hand it back")
            return False
        return True

    def on_result(self, frames: list[bytes]) -> None:
        generation, client, *reply = frames
        if int(generation) != self.generation:
            # local_cluster counts this line as the frozen worker's late result dropped
            log.info("discarding the result of a task from before a reconnect")
            return
        self.busy_with = None
        self.reply(client, reply)

    def reply(self, client: bytes, reply: list[bytes]) -> None:
        self.send(mdp.W_FINAL, client, b"", *reply)
        self.done += 1

    def reconnect(self) -> None:
        delay = self.backoff.next_delay()
        log.info("reconnecting in %.2fs", delay)
        self.stop.wait(delay)  # the back-off; SIGTERM cuts it short (we still reconnect to say bye)
        self.connect()


def cmd_run(args: argparse.Namespace) -> int:
    if args.service == "shell" and not args.allow_shell:
        raise CliError("the shell service runs any command it is sent; add --allow-shell")
    with zmq.Context() as ctx:
        worker = Worker(
            ctx,
            args.coordinator,
            args.service,
            name=args.name,
            tags=args.tag,
            heartbeat_s=args.heartbeat,
            codec=args.codec,
            drain_timeout_s=args.drain_timeout,
            framing=args.framing,
            keys=curve.client_keys(args),
        )
        signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
        signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
        worker.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__, "zcl-worker")
    cli.add_endpoint(parser, "--coordinator", "COORDINATOR_ENDPOINT", "tcp://127.0.0.1:5555")
    parser.add_argument("--service", choices=sorted(SERVICES), default="echo")
    parser.add_argument("--name", help="routing identity, for pinning tasks (default: random)")
    parser.add_argument("--tag", action="append", default=[], help="a tag tasks can require")
    parser.add_argument("--heartbeat", type=float, default=OUR_INTERVAL_S, help="seconds")
    parser.add_argument("--codec", choices=sorted(mdp.CODECS), default="msgpack")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds on SIGTERM")
    parser.add_argument("--allow-shell", action="store_true", help="enable the shell service")
    parser.add_argument(
        "--framing",
        choices=mdp.FRAMINGS,
        default="spec",
        help="spec: MDP/0.2 as written; delimited: with an empty frame first, for brokers that "
        "need it (e.g. majortomo); 0.1: MDP/0.1 (RFC 7), for brokers that speak only that",
    )
    curve.add_client_keys(parser)
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(func=cmd_run)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    raise SystemExit(main())
