"""The journal collector (`zcl-collector`): records from many writers, each on disk once.

    writer (DEALER) --[VERSION, record_id, json line]--> collector (ROUTER) --> journal.jsonl
                    <--[VERSION, ACK, record_id, ...]--       after fsync

It writes the same JSON-lines format as the file journal (journal.py). It takes whatever has
arrived, appends it in one write, fsyncs, and only then acknowledges: an acknowledged record is
on disk. It keeps one copy per record id, also across its own restarts (it rereads the file
when it starts, and drops a torn last line, which was never acknowledged). Quotas bound the
file and what each writer's key may add; the wire is journal_wire.py, the writer zmq_journal.py.

    zcl-collector --keys KEYDIR/nodes/collector --path journal.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from zcl import cli, curve
from zcl import keys as keyfiles
from zcl.errors import CliError, RecordError
from zcl.journal import MAX_RECORD_BYTES, check_line
from zcl.journal_wire import ACK, REFUSED, VERSION
from zcl.wire import recv_now, recv_now_as, send_now

log = logging.getLogger("zcl.journal_collector")  # its module path, also under python -m
BATCH = 2000  # records written (and fsynced) together at most
REMEMBER = 250_000  # newest record ids the collector keeps, to recognise resends


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


def main(argv: Sequence[str] | None = None) -> int:
    """`zcl-collector` (or `python -m zcl.journal_collector`): the journal collector daemon."""
    parser = cli.program_parser(__doc__, "zcl-collector")
    add_collector_options(parser)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
