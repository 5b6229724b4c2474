"""The journal over ZeroMQ: many writers on many hosts, one collector, nothing lost or doubled.

    writer (DEALER) --[VERSION, record_id, json line]--> collector (ROUTER) --> journal.jsonl
                    <--[VERSION, ACK, record_id, ...]--       after fsync

The collector writes the same JSON-lines format as the file journal (journal.py). It takes
whatever has arrived, appends it in one write, fsyncs, and only then acknowledges: an
acknowledged record is on disk. It keeps one copy per record id, also across its own restarts
(it rereads the file when it starts, and drops a torn last line, which was never acknowledged).

The writer keeps every record until it is acknowledged and sends again whatever has waited
longer than `resend_after_s` (after a collector restart, or a lost connection). `write()` waits
while `max_unacked` records are outstanding, so a writer's memory is bounded and a slow
collector slows its writers down instead of being flooded. `close()` waits for the last
acknowledgements and raises if any record could not be delivered: never a silent loss.

    python -m cluster_sim.zmq_journal collect --keys KEYDIR/nodes/collector --path journal.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator

from cluster_patterns import cli
from cluster_patterns.wire import recv_now, send_now
from cluster_sim import keys as keyfiles
from cluster_sim.journal import encode_line, iter_records, with_record_id
from cluster_sim.loop_socket import LoopSocket
from cluster_sim.protocols import AsyncJournalWriterProtocol

log = logging.getLogger("journal-collector")
VERSION = b"ZCJ1"
ACK = b"ack"
MAX_RECORD_BYTES = 1024 * 1024
BATCH = 2000  # records written (and fsynced) together at most


class JournalError(RuntimeError):
    """Records could not be delivered to the collector."""


# -- the collector ------------------------------------------------------------------------------


def recover(path: Path) -> set[bytes]:
    """Record ids already on disk; a torn last line (never acknowledged) is cut off first."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        log.warning("dropping a torn last line of %d bytes", len(data) - complete)
        with path.open("r+b") as journal:
            journal.truncate(complete)
    return {str(record["record_id"]).encode() for record in iter_records(data[:complete])}


class Collector:
    def __init__(self, path: Path, sock: zmq.Socket[bytes]) -> None:
        self.path, self.sock = path, sock
        self.seen = recover(path)
        self.file = path.open("ab")
        self.counters: dict[str, int] = {"written": 0, "duplicates": 0, "dropped": 0}
        log.info("%s holds %d records", path, len(self.seen))

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.sock.poll(250):
                self.take_batch()
        self.file.close()

    def take_batch(self) -> None:
        lines: list[bytes] = []
        acks: dict[bytes, list[bytes]] = {}
        batch_ids: set[bytes] = set()
        for _ in range(BATCH):
            try:
                frames = recv_now(self.sock)
            except zmq.Again:
                break
            parsed = self._parse(frames)
            if parsed is None:
                continue
            peer, record_id, line = parsed
            acks.setdefault(peer, []).append(record_id)
            if record_id in self.seen or record_id in batch_ids:
                self.counters["duplicates"] += 1
                continue
            batch_ids.add(record_id)
            lines.append(line)
        if lines:
            self.file.write(b"".join(lines))
            self.file.flush()
            os.fsync(self.file.fileno())  # acknowledged means on disk
            self.seen |= batch_ids
            self.counters["written"] += len(lines)
        for peer, ids in acks.items():
            with contextlib.suppress(zmq.ZMQError):  # a writer that left gets no ack
                send_now(self.sock, [peer, VERSION, ACK, *ids])

    def _parse(self, frames: list[bytes]) -> tuple[bytes, bytes, bytes] | None:
        if len(frames) != 4 or frames[1] != VERSION or not frames[2]:
            self.counters["dropped"] += 1
            return None
        peer, _, record_id, line = frames
        try:
            record = json.loads(line)
            valid = isinstance(record, dict) and str(record.get("record_id")).encode() == record_id
        except ValueError:
            valid = False
        if not valid or not line.endswith(b"\n") or line.count(b"\n") != 1:
            self.counters["dropped"] += 1
            return None
        return peer, record_id, line


def collect(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with zmq.Context() as ctx:
        auth: ThreadAuthenticator | None = None
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 1000  # the last acknowledgements still go out on a clean stop
        sock.router_mandatory = True
        sock.maxmsgsize = MAX_RECORD_BYTES + 1024
        if args.keys is not None:
            server = keyfiles.load_agent_keys(args.keys)
            auth = ThreadAuthenticator(ctx)
            auth.start()
            provider = keyfiles.AuthorizedKeys(server.authorized_keys, Counter())
            auth.configure_curve_callback("*", credentials_provider=provider)
            sock.curve_server = True
            sock.curve_secretkey, sock.curve_publickey = server.secret, server.public
        elif not args.insecure:
            raise cli.CliError("give --keys COLLECTOR_KEY_DIR, or --insecure")
        try:
            collector = Collector(args.path, sock)
            cli.announce_ready("journal-collector", cli.bind(sock, args.bind))
            collector.serve(stop)
            log.info("stopped: %s", collector.counters)
        finally:
            sock.close()
            if auth is not None:
                auth.stop()
    return 0


# -- the writer ---------------------------------------------------------------------------------


class ZmqJournalWriter:
    """AsyncJournalWriterProtocol over ZeroMQ. Use in one event loop."""

    def __init__(
        self,
        endpoint: str,
        keys: keyfiles.ControllerKeys | None,
        *,
        collector_id: str = "collector",
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        max_unacked: int = 1000,
        resend_after_s: float = 1.0,
    ) -> None:
        self.own_ctx = ctx is None
        self.ctx = ctx if ctx is not None else zmq.Context()
        self.max_unacked, self.resend_after_s = max_unacked, resend_after_s
        self.unacked: dict[bytes, tuple[bytes, float]] = {}  # id -> (line, last sent)
        self.acked = 0
        self.room = asyncio.Event()
        self.room.set()
        self.drained = asyncio.Event()
        self.drained.set()
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = max_unacked * 2  # room for a full window plus its resend
        if keys is not None:
            sock.curve_publickey, sock.curve_secretkey = keys.public, keys.secret
            sock.curve_serverkey = keys.agent_key(collector_id)
        sock.connect(endpoint)
        self.link = LoopSocket(sock, self._on_ack)
        self.resender = asyncio.create_task(self._resend_forever())

    async def write(self, record: Mapping[str, Any]) -> None:
        """Returns once the record is queued; `flush()` waits until all are on disk."""
        while len(self.unacked) >= self.max_unacked:
            self.room.clear()
            await self.room.wait()
        full = with_record_id(record)
        record_id, line = str(full["record_id"]).encode(), encode_line(full)
        if len(line) > MAX_RECORD_BYTES:
            raise JournalError(f"record {record_id!r} is {len(line)} bytes, over the limit")
        self.unacked[record_id] = (line, time.monotonic())
        self.drained.clear()
        self._send(record_id, line)

    def _send(self, record_id: bytes, line: bytes) -> None:
        with contextlib.suppress(zmq.Again):  # the queue is full: the resender tries again
            self.link.send([VERSION, record_id, line])

    def _on_ack(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or frames[:2] != [VERSION, ACK]:
            return
        for record_id in frames[2:]:
            if self.unacked.pop(record_id, None) is not None:
                self.acked += 1
        if len(self.unacked) < self.max_unacked:
            self.room.set()
        if not self.unacked:
            self.drained.set()

    async def _resend_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resend_after_s / 2)  # a timer tick, not synchronisation
            stale = time.monotonic() - self.resend_after_s
            for record_id, (line, sent) in list(self.unacked.items()):
                if sent < stale:
                    self.unacked[record_id] = (line, time.monotonic())
                    self._send(record_id, line)

    async def flush(self, timeout_s: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.drained.wait(), timeout_s)
        except TimeoutError:
            raise JournalError(
                f"{len(self.unacked)} records not acknowledged within {timeout_s} s"
            ) from None

    async def close(self, timeout_s: float = 30.0) -> None:
        try:
            await self.flush(timeout_s)
        finally:
            self.resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.resender
            self.link.close()
            if self.own_ctx:
                self.ctx.term()


_conforms: type[AsyncJournalWriterProtocol] = ZmqJournalWriter


# -- a writer as a process: load for tests and demos ---------------------------------------------


async def write_many(args: argparse.Namespace) -> None:
    controller = None if args.keys is None else keyfiles.load_controller_keys(args.keys)
    writer = ZmqJournalWriter(args.endpoint, controller, max_unacked=args.window)
    cli.announce_ready("journal-writer", args.endpoint)
    reported = 0
    for n in range(args.count):
        await writer.write({"record_id": f"{args.name}-{n}", "writer": args.name, "n": n})
        if n % args.report_every == 0:  # every record below the oldest unacknowledged is on disk
            oldest = min((int(rid.rsplit(b"-", 1)[1]) for rid in writer.unacked), default=n + 1)
            if oldest - reported >= args.report_every:
                reported = oldest
                print(f"acked {reported}", flush=True)
    await writer.close()
    print(f"done {args.count}", flush=True)


def add_collector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind", type=cli.endpoint, default=os.environ.get("ZCL_JOURNAL_BIND", "tcp://*:5570")
    )
    parser.add_argument("--path", type=Path, required=True, help="the JSON-lines journal file")
    parser.add_argument("--keys", type=Path, help="the collector's key folder (like a node's)")
    parser.add_argument("--insecure", action="store_true", help="no CurveZMQ: tests only")
    parser.set_defaults(func=collect)


def collector_main(argv: Sequence[str] | None = None) -> int:
    """`zcl-collector`: the journal collector daemon, the same as `... zmq_journal collect`."""
    parser = cli.program_parser(__doc__, "zcl-collector")
    add_collector_options(parser)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


def main(argv: Sequence[str] | None = None) -> int:
    parser, verbs = cli.command_parser(__doc__, prog="python -m cluster_sim.zmq_journal")
    add_collector_options(
        cli.add_command(verbs, "collect", collect, "write records from many writers to a file")
    )
    load = cli.add_command(
        verbs, "write", lambda a: asyncio.run(write_many(a)), "send numbered records"
    )
    load.add_argument("--endpoint", type=cli.endpoint, required=True)
    load.add_argument("--keys", type=Path, help="a controller key folder pinning 'collector'")
    load.add_argument("--name", default="w1")
    load.add_argument("--count", type=cli.positive_int, default=1000)
    load.add_argument("--window", type=cli.positive_int, default=1000)
    load.add_argument("--report-every", type=cli.positive_int, default=1000)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
