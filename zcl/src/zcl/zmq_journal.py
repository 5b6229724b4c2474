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

    python -m zcl.zmq_journal collect --keys KEYDIR/nodes/collector --path journal.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from zcl import cli, curve
from zcl import keys as keyfiles
from zcl.errors import (
    CliError,
    JournalError,
    JournalRecordError,
    JournalUnavailableError,
    KeyFileError,
    RecordError,
)
from zcl.journal import MAX_RECORD_BYTES, check_line, record_line
from zcl.loop_socket import LoopSocket
from zcl.protocols import AsyncJournalWriterProtocol
from zcl.wire import recv_now, recv_now_as, send_now

log = logging.getLogger("zcl.zmq_journal")  # its module path, also under python -m
VERSION = b"ZCJ1"
ACK = b"ack"
REFUSED = b"refused"  # [VERSION, REFUSED, record_id, reason]: will never be written; do not resend
BATCH = 2000  # records written (and fsynced) together at most
REMEMBER = 250_000  # newest record ids the collector keeps, to recognise resends


# The writer's monitor events that explain a collector that does not acknowledge.
HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the collector refused our key (not in its authorized_keys)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "CurveZMQ handshake failed (wrong pinned collector key?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "CurveZMQ handshake failed (wrong pinned collector key?)",
}
WAIT_S = 30.0  # the longest write(), flush() and close() wait, unless told otherwise


# -- the collector ------------------------------------------------------------------------------


def digest(line: bytes) -> bytes:
    """What the collector remembers of a record: enough to tell a resend from a reuse of its id."""
    return hashlib.blake2b(line, digest_size=16).digest()


class RecentRecords:
    """The ids (and digests) of the newest `limit` records, for telling a resend from a new
    record in bounded memory.

    A writer resends only records not yet acknowledged (at most its max_unacked, 1,000 by
    default) and within seconds, so a window far wider than all writers' windows together sees
    every resend; a resend older than the window would be written a second time.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.digests: dict[bytes, bytes] = {}
        self.order: deque[bytes] = deque()  # oldest first, for forgetting in order

    def __len__(self) -> int:
        return len(self.digests)

    def get(self, record_id: bytes) -> bytes | None:
        return self.digests.get(record_id)

    def add(self, record_id: bytes, record_digest: bytes) -> None:
        if record_id in self.digests:
            return
        self.digests[record_id] = record_digest
        self.order.append(record_id)
        while len(self.order) > self.limit:
            del self.digests[self.order.popleft()]


def quarantine_path(path: Path) -> Path:
    return path.with_name(path.name + ".quarantine")


CHUNK = 1024 * 1024  # what start-up reads at a time: its memory does not grow with the journal


def recover(path: Path, remember: int = REMEMBER) -> tuple[RecentRecords, int]:
    """The newest `remember` record ids on disk (with digests), and how many lines were set aside.

    A torn last line (never acknowledged) is cut off. A complete line that is not a record
    (written by an older collector that checked less) is moved to the quarantine file beside
    the journal, and counted: a bad line must never stop the collector from starting. The
    journal is read a line at a time (a 300 MiB one made the whole file, its lines and their
    copies live at once: 930 MiB), and rewritten only when a line must go.
    """
    seen = RecentRecords(remember)
    if not path.exists():
        return seen, 0
    complete = _cut_torn_tail(path)
    bad: list[tuple[int, int]] = []  # (start, end) of each line set aside
    with path.open("rb") as journal:
        for start, end, line in _lines(journal, complete):
            try:
                if line is None:
                    raise RecordError("too-large", f"{end - start} bytes")
                record = check_line(line)
            except RecordError as exc:
                bad.append((start, end))
                log.warning(
                    "quarantining a line of %d bytes that is not a record (%s)",
                    end - start,
                    exc.kind,
                )
                continue
            seen.add(str(record["record_id"]).encode(), digest(line))
        if bad:
            _set_aside(path, journal, complete, bad)
    return seen, len(bad)


def _cut_torn_tail(path: Path) -> int:
    """Truncate what follows the last newline (a write that never finished); the length kept."""
    with path.open("r+b") as journal:
        size = journal.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - CHUNK)
            journal.seek(start)
            newline = journal.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            log.warning("dropping a torn last line of %d bytes", size - end)
            journal.truncate(end)
    return end


def _lines(journal: Any, complete: int) -> Iterator[tuple[int, int, bytes | None]]:
    """(start, end, line) for each line up to `complete`; the line is None when it is longer
    than any record may be (it is skipped over in pieces, never held whole)."""
    journal.seek(0)
    offset = 0
    while offset < complete:
        line = journal.readline(MAX_RECORD_BYTES + 1)
        if line.endswith(b"\n"):
            yield offset, offset + len(line), line
            offset += len(line)
            continue
        start, offset = offset, offset + len(line)
        while line and not line.endswith(b"\n"):  # over the limit: to its end, in pieces
            line = journal.readline(CHUNK)
            offset += len(line)
        yield start, offset, None


def _set_aside(path: Path, journal: Any, complete: int, bad: list[tuple[int, int]]) -> None:
    """Move the `bad` ranges to the quarantine file and the rest to a fresh journal, copying
    a piece at a time; the fresh one replaces the journal atomically."""
    fresh = path.with_name(path.name + ".recovering")
    with quarantine_path(path).open("ab") as side, fresh.open("wb") as kept:
        good_from = 0
        for start, end in bad:
            _copy(journal, good_from, start, kept)
            _copy(journal, start, end, side)
            good_from = end
        _copy(journal, good_from, complete, kept)
        for out in (side, kept):
            out.flush()
            os.fsync(out.fileno())
    fresh.replace(path)  # atomic: the journal is whole before and after
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _copy(source: Any, start: int, end: int, out: Any) -> None:
    source.seek(start)
    while start < end:
        piece = source.read(min(CHUNK, end - start))
        out.write(piece)
        start += len(piece)


MAX_JOURNAL_MIB = 16 * 1024  # the journal file's size at most
MAX_WRITER_MIB_PER_HOUR = 1024  # what one writer's key may add in an hour


class Quotas:
    """How much the journal may hold, and how much one writer may add in an hour (a key
    filled 299 MiB in 3.5 s). State only: the time is given, and nothing is written here."""

    def __init__(self, journal_bytes: int, writer_bytes_per_hour: int, size: int = 0) -> None:
        self.journal_bytes, self.writer_bytes_per_hour = journal_bytes, writer_bytes_per_hour
        self.size = size  # the journal's now, with what has been taken since
        self.hours: dict[str, tuple[float, int]] = {}  # writer -> (its hour began, bytes in it)

    def take(self, writer: str, size: int, now: float) -> str | None:
        """Count `size` bytes for `writer`, or say which limit refuses them (nothing counted)."""
        began, added = self.hours.get(writer, (now, 0))
        if now - began >= 3600:
            began, added = now, 0
        if self.size + size > self.journal_bytes:
            mib = self._mib(self.journal_bytes)
            return f"journal-full: the journal holds its --max-journal-mib ({mib})"
        if added + size > self.writer_bytes_per_hour:
            mib = self._mib(self.writer_bytes_per_hour)
            return f"writer-quota: this key added its --max-writer-mib-per-hour ({mib}) this hour"
        self.size += size
        self.hours[writer] = (began, added + size)
        return None

    @staticmethod
    def _mib(limit: int) -> str:
        return f"{limit / (1024 * 1024):g} MiB"


class Collector:
    def __init__(
        self,
        path: Path,
        sock: zmq.Socket[bytes],
        stats_every_s: float = 60.0,
        remember: int = REMEMBER,
        *,
        authorized: keyfiles.AuthorizedKeys | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.path, self.sock, self.stats_every_s = path, sock, stats_every_s
        # With keys, each record's sender is checked against authorized_keys as it stands
        # now, not only at the handshake: a writer revoked while connected writes no more.
        self.authorized = authorized
        self.seen, quarantined = recover(path, remember)
        self.file = path.open("ab")
        self.quotas = quotas or Quotas(MAX_JOURNAL_MIB << 20, MAX_WRITER_MIB_PER_HOUR << 20)
        self.quotas.size = path.stat().st_size
        self.counters: Counter[str] = Counter(
            {"written": 0, "duplicates": 0, "refused": 0, "dropped": 0}
        )
        self.counters["quarantined"] = quarantined
        log.info("%s: remembering its newest %d record ids", path, len(self.seen))
        if quarantined:
            log.warning("%d bad lines moved to %s", quarantined, quarantine_path(path))

    def serve(self, stop: threading.Event) -> None:
        next_stats = time.monotonic() + self.stats_every_s
        while not stop.is_set():
            if self.sock.poll(250):
                self.take_batch()
            if time.monotonic() >= next_stats:  # visible while it runs, not only at the end
                log.info("counters: %s", dict(sorted(self.counters.items())))
                next_stats = time.monotonic() + self.stats_every_s
        self.file.close()

    def take_batch(self) -> None:
        lines: list[bytes] = []
        acks: dict[bytes, list[bytes]] = {}
        refusals: list[tuple[bytes, bytes, str]] = []
        batch: dict[bytes, bytes] = {}
        if self.authorized is not None:
            self.authorized.refresh()
        for _ in range(BATCH):
            try:
                frames, sender = (
                    recv_now_as(self.sock) if self.authorized else (recv_now(self.sock), "")
                )
            except zmq.Again:
                break
            if len(frames) != 4 or frames[1] != VERSION:
                self.counters["dropped"] += 1  # not our protocol: nothing to answer
                continue
            peer, _, record_id, line = frames
            verdict = self._judge(sender, record_id, line, batch)
            if verdict == "write":
                batch[record_id] = digest(line)
                lines.append(line)
            elif verdict == "resent":
                self.counters["duplicates"] += 1
            else:  # "kind: reason"
                self.counters["refused"] += 1
                self.counters[f"refused.{verdict.split(':', 1)[0]}"] += 1
                refusals.append((peer, record_id, verdict))
                continue
            acks.setdefault(peer, []).append(record_id)
        if lines:
            self.file.write(b"".join(lines))
            self.file.flush()
            os.fsync(self.file.fileno())  # acknowledged means on disk
            for record_id, record_digest in batch.items():
                self.seen.add(record_id, record_digest)
            self.counters["written"] += len(lines)
        for peer, ids in acks.items():
            with contextlib.suppress(zmq.ZMQError):  # a writer that left gets no ack
                send_now(self.sock, [peer, VERSION, ACK, *ids])
        for peer, record_id, reason in refusals:
            with contextlib.suppress(zmq.ZMQError):
                send_now(self.sock, [peer, VERSION, REFUSED, record_id[:128], reason.encode()])

    def _judge(self, sender: str, record_id: bytes, line: bytes, batch: dict[bytes, bytes]) -> str:
        """ "write", "resent" (on disk already: ack it again), or "kind: why it is refused"."""
        if self.authorized is not None and not self.authorized.allows(sender):
            return "key-refused: this writer's key was revoked"
        try:
            check_line(line, record_id)
        except RecordError as exc:
            return str(exc)
        known = self.seen.get(record_id) or batch.get(record_id)
        if known is not None:
            return "resent" if known == digest(line) else "id-reused: another record has this id"
        return self.quotas.take(sender, len(line), time.monotonic()) or "write"


def collect(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with zmq.Context() as ctx:
        auth: ThreadAuthenticator | None = None
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 1000  # the last acknowledgements still go out on a clean stop
        sock.router_mandatory = True
        sock.maxmsgsize = MAX_RECORD_BYTES + 1024  # a frame over this drops the connection
        cli.serve_strangers_briefly(sock)
        log.info("open files: up to %d", cli.raise_open_file_limit())
        if args.keys is not None:
            server = keyfiles.load_agent_keys(args.keys)
            auth = curve.start_authenticator(ctx, server)
            curve.serve_curve(sock, server)
        elif not args.insecure:
            raise CliError("give --keys COLLECTOR_KEY_DIR, or --insecure")
        try:
            authorized = None
            if args.keys is not None:
                authorized = keyfiles.AuthorizedKeys(server.authorized_keys, Counter())
            quotas = Quotas(args.max_journal_mib << 20, args.max_writer_mib_per_hour << 20)
            collector = Collector(
                args.path,
                sock,
                args.stats_every,
                args.remember,
                authorized=authorized,
                quotas=quotas,
            )
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
    """AsyncJournalWriterProtocol over ZeroMQ. Make it anywhere; use it in one event loop.

    Every wait is bounded by `wait_s` (write() with the window full, flush(), close()), after
    which JournalUnavailableError says what the writer has seen of the collector (refused
    our key, cannot connect, silent). Only JournalErrors come out of it."""

    def __init__(
        self,
        endpoint: str,
        keys: keyfiles.ControllerKeys | None,
        *,
        collector_id: str = "collector",
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        max_unacked: int = 1000,
        resend_after_s: float = 1.0,
        wait_s: float = WAIT_S,
    ) -> None:
        server_key = None
        if keys is not None:  # before any socket: one left open would hold the context
            try:
                server_key = keys.agent_key(collector_id)
            except KeyFileError:
                raise JournalError(
                    f"no pinned key for {collector_id!r} in the controller's known_hosts"
                ) from None
        self.endpoint, self.keys, self.server_key = endpoint, keys, server_key
        self.own_ctx = ctx is None
        self.ctx = ctx if ctx is not None else zmq.Context()
        self.max_unacked, self.resend_after_s, self.wait_s = max_unacked, resend_after_s, wait_s
        self.unacked: dict[bytes, tuple[bytes, float]] = {}  # id -> (line, last sent)
        self.acked = 0
        self.refused: dict[bytes, str] = {}  # id -> the collector's reason; never written
        self.problem = "the collector has not acknowledged"  # the latest news of why not
        self.link: LoopSocket[list[bytes]] | None = None
        self.monitor: LoopSocket[list[bytes]] | None = None
        self.resender: asyncio.Task[None] | None = None
        self.room: asyncio.Event | None = None
        self.drained: asyncio.Event | None = None
        self.closed = False

    def _started(self) -> tuple[asyncio.Event, asyncio.Event]:
        """The socket and its tasks, made on first use inside the loop that uses them."""
        if self.room is None or self.drained is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndhwm = self.max_unacked * 2  # room for a full window plus its resend
            if self.keys is not None and self.server_key is not None:
                sock.curve_publickey, sock.curve_secretkey = self.keys.public, self.keys.secret
                sock.curve_serverkey = self.server_key
            events = sum(HANDSHAKE_FAILURES) | zmq.EVENT_CONNECT_RETRIED
            events |= zmq.EVENT_HANDSHAKE_SUCCEEDED
            try:
                monitor = sock.get_monitor_socket(events)
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                sock.close(linger=0)
                raise JournalUnavailableError(f"cannot use {self.endpoint}: {exc}") from None
            self.monitor = LoopSocket(monitor, self._on_event, recv_now)
            self.link = LoopSocket(sock, self._on_ack, recv_now)
            self.resender = asyncio.create_task(self._resend_forever())
            self.room, self.drained = asyncio.Event(), asyncio.Event()
            self.room.set()
            self.drained.set()
        return self.room, self.drained

    async def write(self, record: Mapping[str, Any]) -> None:
        """Returns once the record is queued; `flush()` waits until all are on disk.
        JournalRecordError for a record that can never be written; JournalUnavailableError
        when the window stays full for `wait_s`."""
        if self.closed:
            raise JournalError(
                "the journal writer is closed (an operational context closes the journal it "
                "was given when it exits)"
            )
        record_id, line = record_line(record)  # refused here, before anything is kept
        room, drained = self._started()
        if len(self.unacked) >= self.max_unacked:
            room.clear()
            waiting = f"no room for another record ({len(self.unacked)} not acknowledged)"
            await self._wait(room, self.wait_s, waiting)
        self.unacked[record_id] = (line, time.monotonic())
        drained.clear()
        self._send(record_id, line)

    async def _wait(self, event: asyncio.Event, timeout_s: float | None, what: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            raise JournalUnavailableError(
                f"{what} within {timeout_s:g} s: {self.problem}"
            ) from None

    def _send(self, record_id: bytes, line: bytes) -> None:
        if self.link is None:
            return
        with contextlib.suppress(zmq.Again):  # the queue is full: the resender tries again
            self.link.send([VERSION, record_id, line])

    def _on_event(self, frames: list[bytes]) -> None:
        event = int(parse_monitor_message(frames)["event"])
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.problem = "the collector has not acknowledged (connected; frozen or slow?)"
            return
        if event == zmq.EVENT_CONNECT_RETRIED:
            news = f"cannot connect to {self.endpoint} (collector down or unreachable)"
        else:
            news = HANDSHAKE_FAILURES.get(event, "")
            if news and self.keys is None:
                news = "the collector wants CurveZMQ and this writer has no keys"
        if news and news != self.problem:
            log.warning("journal writer: %s", news)  # once per change, not once per retry
            self.problem = news

    def _on_ack(self, frames: list[bytes]) -> None:
        if len(frames) == 4 and frames[:2] == [VERSION, REFUSED]:
            if self.unacked.pop(frames[2], None) is not None:
                self.refused[frames[2]] = frames[3].decode(errors="replace")
        elif len(frames) >= 2 and frames[:2] == [VERSION, ACK]:
            for record_id in frames[2:]:
                if self.unacked.pop(record_id, None) is not None:
                    self.acked += 1
        else:
            return
        if self.room is not None and len(self.unacked) < self.max_unacked:
            self.room.set()
        if self.drained is not None and not self.unacked:
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
        """Wait until every record written so far is on the collector's disk, or refused:
        then raise JournalError naming the refused ones (never a silent loss). The wait is
        `timeout_s`, or the writer's `wait_s`."""
        _, drained = self._started()
        waited = self.wait_s if timeout_s is None else timeout_s
        await self._wait(drained, waited, f"{len(self.unacked)} records not acknowledged")
        if self.refused:
            record_id, reason = next(iter(self.refused.items()))
            raise JournalRecordError(
                f"the collector refused {len(self.refused)} record(s), e.g. "
                f"{record_id.decode(errors='replace')}: {reason}"
            )

    async def close(self, timeout_s: float | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.unacked or self.refused:
                await self.flush(timeout_s)
        finally:
            if self.resender is not None:
                self.resender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.resender
            if self.link is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self.link.sock.disable_monitor()
            for sock in (self.monitor, self.link):
                if sock is not None:
                    sock.close()
            if self.own_ctx:
                self.ctx.destroy(linger=0)


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
    parser.add_argument(
        "--remember",
        type=cli.positive_int,
        default=REMEMBER,
        help="record ids kept in memory to recognise a resend (the newest; default "
        f"{REMEMBER:,}, about 200 bytes each)",
    )
    parser.add_argument(
        "--max-journal-mib",
        type=cli.positive_int,
        default=MAX_JOURNAL_MIB,
        help=f"the journal file's size at most; records past it are refused (default "
        f"{MAX_JOURNAL_MIB:,})",
    )
    parser.add_argument(
        "--max-writer-mib-per-hour",
        type=cli.positive_int,
        default=MAX_WRITER_MIB_PER_HOUR,
        help="what one writer's key may add in an hour; past it its records are refused "
        f"(default {MAX_WRITER_MIB_PER_HOUR:,})",
    )
    parser.add_argument(
        "--stats-every", type=float, default=60.0, help="seconds between counter lines in the log"
    )
    parser.set_defaults(func=collect)


def collector_main(argv: Sequence[str] | None = None) -> int:
    """`zcl-collector`: the journal collector daemon, the same as `... zmq_journal collect`."""
    parser = cli.program_parser(__doc__, "zcl-collector")
    add_collector_options(parser)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


def main(argv: Sequence[str] | None = None) -> int:
    parser, verbs = cli.command_parser(__doc__, prog="python -m zcl.zmq_journal")
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
