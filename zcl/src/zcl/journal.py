"""The journal as cluster_runner keeps it: one JSON object per line, one line per result.

`FileJournalWriter` is the baseline (cluster_runner's AsyncPerfTestJournalFileWriter): an
asyncio writer that appends each record from a worker thread so the event loop never waits on
the disk. The ZeroMQ journal (zmq_journal.py and journal_collector.py) writes the very same
format, so the two files can be compared line by line.

Every record carries a `record_id`, given here when the caller did not: it is what lets the
ZeroMQ collector keep exactly one copy of a record that was sent twice.

`compare` is the A/B check of a migration: the same scheduled run through SSH and through
ZeroMQ must leave the same records, once what may differ between two runs (timings, record
ids, the transport) is set aside.

    python -m zcl.journal compare ssh-journal.jsonl zmq-journal.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from zcl import cli
from zcl.errors import CliError, JournalRecordError, JournalUnavailableError, RecordError
from zcl.protocols import AsyncJournalWriterProtocol

VARYING = ("record_id", "duration_s", "transport")  # differ between two runs of the same work
MAX_RECORD_BYTES = 1024 * 1024  # one record's line, newline included
MAX_DEPTH = 32  # nesting of objects and arrays in a record; results are flat, attackers are not
RECORD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in a parsed record, without recursion; RecordError
    for a string (key or value) holding a lone surrogate: JSON's \\ud800 escape parses to a
    str that no UTF-8 can hold, so a reader in another language would fail on it or mangle it."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _utf8(item)
        elif isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                for key in item:
                    _utf8(key)
    return deepest


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError("lone-surrogate", "a string holds half a UTF-16 pair") from None


def _not_json(constant: str) -> None:
    raise RecordError("not-json", f"{constant} is not JSON (RFC 8259 has no such number)")


def _one_meaning(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: with one given twice, readers disagree on
    which counts (Python keeps the last, others the first or refuse)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        raise RecordError("duplicate-key", "a key appears twice in one object")
    return record


_STRICT = json.JSONDecoder(parse_constant=_not_json, object_pairs_hook=_one_meaning)


def check_line(line: bytes, record_id: bytes | None = None) -> dict[str, Any]:
    """The record a journal line holds, or RecordError saying why it is not one.

    A record is one UTF-8 JSON object on one line ending in its only newline, no bigger than
    MAX_RECORD_BYTES, nested at most MAX_DEPTH deep, strict (no NaN or infinities, no key
    twice in one object, no lone surrogate), whose `record_id` is a string of up to 128
    letters, digits and `._:-` (equal to `record_id` when one is given). Whatever passes can be
    written, read back and compared; whatever fails is refused before it reaches a disk.
    """
    if len(line) > MAX_RECORD_BYTES:
        raise RecordError("too-large", f"{len(line)} bytes, over {MAX_RECORD_BYTES}")
    if not line.endswith(b"\n") or line.count(b"\n") != 1 or b"\r" in line:
        raise RecordError("not-one-line", "a record is one line ending in its only newline")
    try:
        record = _STRICT.decode(line[:-1].decode("utf-8"))
    except UnicodeDecodeError:
        raise RecordError("not-utf8", "a record is UTF-8") from None
    except RecursionError:
        raise RecordError("too-deep", f"nested deeper than {MAX_DEPTH}") from None
    except RecordError:
        raise  # the strict decoder's own: a constant, a key twice
    except ValueError as exc:
        raise RecordError("not-json", str(exc)) from None
    if not isinstance(record, dict):
        raise RecordError("not-an-object", "a record is a JSON object")
    if _depth(record) > MAX_DEPTH:
        raise RecordError("too-deep", f"nested deeper than {MAX_DEPTH}")
    found = record.get("record_id")
    if not isinstance(found, str) or not RECORD_ID.fullmatch(found):
        raise RecordError("bad-record-id", "record_id must be 1-128 of A-Z a-z 0-9 . _ : -")
    if record_id is not None and found.encode() != record_id:
        raise RecordError("bad-record-id", "the record_id inside differs from the one outside")
    return record


def with_record_id(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"record_id": uuid.uuid4().hex, **record}


def record_line(record: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(record_id, line) for a record a writer was given: an id added where it has none, and
    the collector's own check (check_line) run on the line, so every journal refuses the same
    records, at write(). Strict JSON: NaN and Infinity are not JSON, and are refused."""
    full = with_record_id(record)
    try:
        line = json.dumps(full, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise JournalRecordError(f"not a JSON record: {exc}") from None
    line += b"\n"
    try:
        check_line(line)
    except RecordError as exc:
        raise JournalRecordError(f"record {str(full.get('record_id'))[:64]!r}: {exc}") from None
    return str(full["record_id"]).encode(), line


def encode_line(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete record in a journal file (a torn last line is not a record)."""
    return list(iter_records(path.read_bytes()))


def iter_records(data: bytes) -> Iterator[dict[str, Any]]:
    """Split on the newline only: a CR, or a U+2028 inside a string, is not a line break."""
    complete = data[: data.rfind(b"\n") + 1]
    for number, line in enumerate(complete.split(b"\n")[:-1], start=1):
        if line.strip():
            try:
                yield json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise RecordError("bad-line", f"line {number} is not a record: {exc}") from None


class FileJournalWriter:
    """Appends records to a local JSON-lines file; `flush` fsyncs them, `durable=True` fsyncs
    each one as it is written."""

    def __init__(self, path: Path, durable: bool = False) -> None:
        self.path, self.durable = path, durable
        self.file = path.open("ab")

    def _append(self, line: bytes) -> None:
        self.file.write(line)
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())

    async def write(self, record: Mapping[str, Any]) -> None:
        """Raises JournalRecordError for a record the collector would refuse too."""
        _, line = record_line(record)
        self._open()
        await asyncio.to_thread(self._append, line)

    async def flush(self) -> None:
        self._open()
        await asyncio.to_thread(os.fsync, self.file.fileno())

    def _open(self) -> None:
        if self.file.closed:
            raise JournalUnavailableError(f"{self.path}: the journal is closed")

    async def close(self) -> None:
        if not self.file.closed:
            await self.flush()
            self.file.close()


_conforms: type[AsyncJournalWriterProtocol] = FileJournalWriter


def comparable(records: Iterable[Mapping[str, Any]], ignore: Iterable[str] = VARYING) -> list[str]:
    """Records without the fields that may differ between runs, in a stable order."""
    skipped = set(ignore)
    return sorted(
        json.dumps({k: v for k, v in r.items() if k not in skipped}, sort_keys=True)
        for r in records
    )


def differences(first: list[str], second: list[str]) -> tuple[list[str], list[str]]:
    """What only the first journal holds, and what only the second does (repeats count)."""
    a, b = Counter(first), Counter(second)
    return sorted((a - b).elements()), sorted((b - a).elements())


def cmd_compare(args: argparse.Namespace) -> int:
    args.ignore = list(args.only_ignore) if args.only_ignore else [*VARYING, *args.ignore]
    journals = []
    for path in (args.first, args.second):
        try:
            journals.append(comparable(read_journal(path), args.ignore))
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the journal {path}: {exc}") from None
    only_first, only_second = differences(*journals)
    for name, records in ((args.first, only_first), (args.second, only_second)):
        for record in records[: args.show]:
            print(f"only in {name}: {record}")
    if not journals[0]:
        print(f"{args.first} holds no record: nothing to compare")
        return 1
    if only_first or only_second:
        print(
            f"DIFFER: {len(only_first)} record(s) only in {args.first}, "
            f"{len(only_second)} only in {args.second}"
        )
        return 1
    print(f"EQUAL: {len(journals[0])} records (ignoring {', '.join(args.ignore)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = cli.command_parser(__doc__, "zcl-journal")
    compare = cli.add_command(commands, "compare", cmd_compare, "the A/B check of two runs")
    compare.add_argument("first", type=Path)
    compare.add_argument("second", type=Path)
    compare.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="FIELD",
        help="a field that may differ between runs, besides the defaults "
        f"({', '.join(VARYING)}); repeatable",
    )
    compare.add_argument(
        "--only-ignore",
        action="append",
        metavar="FIELD",
        help="ignore these fields instead of the defaults; repeatable",
    )
    compare.add_argument("--show", type=int, default=10, help="differing records to print")
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
