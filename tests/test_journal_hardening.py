"""The journal collector against an attacker with a key and against its own past: one message
cannot kill it, nothing it acknowledges can stop it from starting again, and what it writes can
always be read back (issue 14, finding 2, and the collector's part of finding 9)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_patterns import processes
from tests.agents import free_port
from tests.test_coordinator_auth import connect_and_handshake
from tests.test_zmq_journal import COLLECTOR, collector, journal_keys, writer_keys
from zcl import cli, journal_collector, keys, zmq_journal
from zcl.errors import JournalError, JournalRecordError, RecordError
from zcl.journal import MAX_RECORD_BYTES, check_line, encode_line, read_journal, with_record_id
from zcl.journal_collector import RecentRecords, recover
from zcl.journal_wire import REFUSED, VERSION
from zcl.zmq_journal import ZmqJournalWriter

__all__ = ["journal_keys"]  # the fixture, used by name below

DEEP = b'{"record_id":"deep","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
POISON = {
    # an id frame that is no id, with a record whose id is null: the old str(None) == "None"
    b"None": b'{"record_id":null}\n',
    b"cr": b'{"record_id":"cr",\r"x":1}\n',  # bytes.splitlines() split this record in two
    b"u16": '{"record_id":"u16"}\n'.encode("utf-16-le"),  # json.loads(bytes) would take it
    b"deep": DEEP,  # RecursionError escaped the old parser and killed the collector
    # Not JSON (RFC 8259), yet Python's parser took them, and the collector acked them:
    b"nan": b'{"record_id":"nan","x":NaN}\n',
    b"inf": b'{"record_id":"inf","x":-Infinity}\n',
    b"dup": b'{"record_id":"dup","x":1,"x":2}\n',  # which x? readers differ
    b"lone": b'{"record_id":"lone","x":"\\ud800"}\n',  # a string no UTF-8 can hold
}


@pytest.fixture
def link(journal_keys: Path) -> Iterator[tuple[zmq.Socket[bytes], str]]:
    """A raw authenticated DEALER, and the endpoint a collector should bind for it."""
    runner = writer_keys(journal_keys)
    bind = f"tcp://127.0.0.1:{free_port()}"
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_publickey, sock.curve_secretkey = runner.public, runner.secret
        sock.curve_serverkey = runner.agent_key("collector")
        sock.connect(bind)
        yield sock, bind
        sock.close()


def answer(sock: zmq.Socket[bytes], record_id: bytes, line: bytes) -> list[bytes]:
    sock.send_multipart([VERSION, record_id, line])
    assert sock.poll(20_000), f"no answer for {record_id!r}"
    return sock.recv_multipart()


def record(record_id: str, **fields: object) -> bytes:
    return json.dumps({"record_id": record_id, **fields}).encode() + b"\n"


def test_poison_is_refused_the_collector_lives_and_starts_again(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    sock, bind = link
    path = tmp_path / "journal.jsonl"
    with processes.Roles(COLLECTOR) as roles:
        with collector(roles, journal_keys, path, bind) as first:
            for record_id, line in POISON.items():
                reply = answer(sock, record_id, line)
                assert reply[:3] == [VERSION, REFUSED, record_id], reply
            assert answer(sock, b"good", record("good")) == [VERSION, b"ack", b"good"]
            assert first.process.poll() is None
            first.kill(signal.SIGTERM)
        with collector(roles, journal_keys, path, bind):  # it starts: nothing bad was written
            assert answer(sock, b"after", record("after"))[:2] == [VERSION, b"ack"]
    assert [r["record_id"] for r in read_journal(path)] == ["good", "after"]


def test_a_journal_poisoned_by_an_older_collector_is_quarantined_and_read(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    sock, bind = link
    path = tmp_path / "journal.jsonl"
    bad = [line if line.endswith(b"\n") else line + b"\n" for line in POISON.values()]
    path.write_bytes(record("one") + b"".join(bad) + record("two"))
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind) as c:
        assert c.wait_for_output(lambda line: "bad lines moved to" in line, 10)
        assert answer(sock, b"two", record("two"))[:3] == [VERSION, b"ack", b"two"]  # a resend
        assert answer(sock, b"three", record("three"))[:2] == [VERSION, b"ack"]
    assert [r["record_id"] for r in read_journal(path)] == ["one", "two", "three"]
    side = (tmp_path / "journal.jsonl.quarantine").read_bytes()
    assert side.count(b"\n") >= len(POISON) and b'"cr"' in side
    compare = subprocess.run(
        [sys.executable, "-m", "zcl.journal", "compare", str(path), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert compare.returncode == 0 and "EQUAL: 3 records" in compare.stdout


def test_the_size_limit_holds_to_the_byte_and_a_reused_id_is_refused(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    sock, bind = link
    path = tmp_path / "journal.jsonl"
    frame = len(record("big", pad=""))
    largest = record("big", pad="x" * (MAX_RECORD_BYTES - frame))
    assert len(largest) == MAX_RECORD_BYTES
    over = record("over", pad="x" * (MAX_RECORD_BYTES - frame + 1))
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind):
        assert answer(sock, b"big", largest)[:2] == [VERSION, b"ack"]
        assert answer(sock, b"over", over)[:2] == [VERSION, REFUSED]
        assert answer(sock, b"same", record("same", n=1))[:2] == [VERSION, b"ack"]
        assert answer(sock, b"same", record("same", n=1))[:2] == [VERSION, b"ack"]  # a resend
        reused = answer(sock, b"same", record("same", n=2))
        assert reused[:3] == [VERSION, REFUSED, b"same"] and b"id-reused" in reused[3]
    on_disk = read_journal(path)
    assert [r["record_id"] for r in on_disk] == ["big", "same"] and on_disk[1]["n"] == 1


def test_counters_are_visible_while_it_runs(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    sock, bind = link
    with processes.Roles(COLLECTOR) as roles:
        c = roles.spawn(
            "collector",
            *("--bind", bind, "--path", str(tmp_path / "j.jsonl")),
            *("--keys", str(keys.node_dir(journal_keys, "collector")), "--stats-every", "0.2"),
            module=COLLECTOR,
        )
        answer(sock, b"cr", POISON[b"cr"])
        line = c.wait_for_output(lambda line: "'refused.not-one-line': 1" in line, 10)
        assert line is not None and "counters:" in line and c.process.poll() is None


def test_the_writer_reports_a_refused_record_instead_of_resending_it(
    journal_keys: Path, tmp_path: Path
) -> None:
    bind = f"tcp://127.0.0.1:{free_port()}"

    deep = {"deep": json.loads("[" * 40 + "]" * 40)}  # deeper than allowed

    def unchecked(record: dict[str, object]) -> tuple[bytes, bytes]:
        """What a writer without the shared check (an older release) would send."""
        full = with_record_id(record)
        return str(full["record_id"]).encode(), encode_line(full)

    async def write() -> None:
        writer = ZmqJournalWriter(bind, writer_keys(journal_keys), resend_after_s=0.5)
        await writer.write({"fine": 1})
        with pytest.raises(JournalRecordError, match="too-deep"):  # refused before it is sent
            await writer.write(deep)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(zmq_journal, "record_line", unchecked)
            await writer.write(deep)  # the collector's own check still refuses it
        with pytest.raises(JournalError, match=r"refused 1 record.*too-deep"):
            await writer.close(timeout_s=20)

    with (
        processes.Roles(COLLECTOR) as roles,
        collector(roles, journal_keys, tmp_path / "j.jsonl", bind),
    ):
        asyncio.run(write())
    assert [r["fine"] for r in read_journal(tmp_path / "j.jsonl")] == [1]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"record_id":"a"}', "not-one-line"),
        (b'{"record_id":"a"}\n\n', "not-one-line"),
        (b'{"record_id":"a",\r"b":1}\n', "not-one-line"),
        ('{"record_id":"a"}'.encode("utf-16-le") + b"\n", "not-json"),  # NULs are UTF-8
        (b'{"record_id":"a","x":"\xff"}\n', "not-utf8"),
        (b'["record_id"]\n', "not-an-object"),
        (b"{nope}\n", "not-json"),
        (b'{"record_id":null}\n', "bad-record-id"),
        (b'{"record_id":"a b"}\n', "bad-record-id"),
        (b'{"record_id":"' + b"a" * 129 + b'"}\n', "bad-record-id"),
        (DEEP, "too-deep"),
        (b'{"record_id":"a","x":' + b"[" * 33 + b"]" * 33 + b"}\n", "too-deep"),
        (b'{"record_id":"a","x":NaN}\n', "not-json"),
        (b'{"record_id":"a","x":[Infinity]}\n', "not-json"),
        (b'{"record_id":"a","x":{"y":-Infinity}}\n', "not-json"),
        (b'{"record_id":"a","record_id":"b"}\n', "duplicate-key"),
        (b'{"record_id":"a","x":[{"k":1,"k":1}]}\n', "duplicate-key"),
        (b'{"record_id":"a","x":"\\udfff"}\n', "lone-surrogate"),
        (b'{"record_id":"a","\\ud83d":1}\n', "lone-surrogate"),
        (b'{"record_id":"a","x":["\\ud83d\\ude00 is fine"],"y":"\\ud83d"}\n', "lone-surrogate"),
    ],
)
def test_check_line_refuses_what_is_not_a_record(line: bytes, kind: str) -> None:
    with pytest.raises(RecordError) as refused:
        check_line(line)
    assert refused.value.kind == kind


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, pairs=st.lists(st.tuples(st.sampled_from("abc"), JSON_VALUES)))
def test_whatever_check_line_takes_is_strict_json_every_reader_reads_alike(
    value: object, pairs: list[tuple[str, object]]
) -> None:
    """Generated lines (NaN and infinities, lone surrogates, repeated keys among them): what
    passes parses to one meaning, and writes back as strict UTF-8 JSON."""
    members = ['"record_id":"p"', f'"v":{json.dumps(value)}']
    members += [f"{json.dumps(key)}:{json.dumps(item)}" for key, item in pairs]
    line = ("{" + ",".join(members) + "}\n").encode()
    try:
        parsed = check_line(line)
    except RecordError:
        return
    again = json.dumps(parsed, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert len({key for key, _ in pairs}) == len(pairs)  # no key was given twice
    assert json.loads(again) == parsed


def test_a_line_separator_inside_a_string_is_not_a_line_break(tmp_path: Path) -> None:
    line = json.dumps({"record_id": "a", "text": "one\u2028two\x85three"}, ensure_ascii=False)
    assert check_line(line.encode() + b"\n")["text"] == "one\u2028two\x85three"
    (tmp_path / "j.jsonl").write_bytes(line.encode() + b"\n")
    assert read_journal(tmp_path / "j.jsonl")[0]["text"] == "one\u2028two\x85three"


# -- what the collector remembers stays bounded (issue 14: Collector.seen) ----------------------


def test_the_collector_remembers_a_bounded_window_of_recent_ids() -> None:
    """It used to keep every id it ever wrote, for good: memory grew with the journal."""
    recent = RecentRecords(limit=3)
    for n in range(10):
        recent.add(b"id-%d" % n, b"digest-%d" % n)
    assert len(recent) == 3
    assert recent.get(b"id-9") == b"digest-9" and recent.get(b"id-7") == b"digest-7"
    assert recent.get(b"id-6") is None  # the oldest are forgotten first
    recent.add(b"id-9", b"digest-9")  # a known id again: nothing new to remember
    assert len(recent) == 3 and recent.get(b"id-7") == b"digest-7"


def test_recovery_remembers_only_the_newest_records(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(encode_line({"record_id": f"r{n}", "n": n}) for n in range(50)))
    recent, quarantined = recover(path, remember=10)
    assert quarantined == 0 and len(recent) == 10
    assert recent.get(b"r49") is not None and recent.get(b"r39") is None


@contextmanager
def a_collector(keydir: Path, journal: Path) -> Iterator[tuple[cli.Ctx, str]]:
    """A collector process with `keydir`'s keys, and a context to reach it from."""
    bind = f"tcp://127.0.0.1:{free_port()}"
    with (
        processes.Roles(COLLECTOR) as roles,
        collector(roles, keydir, journal, bind),
        zmq.Context() as ctx,
    ):
        yield ctx, bind


def dealer_as(ctx: cli.Ctx, who: keys.ControllerKeys | None) -> cli.Sock:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if who is not None:
        sock.curve_publickey, sock.curve_secretkey = who.public, who.secret
        sock.curve_serverkey = who.agent_key("collector")
    return sock


def test_the_collector_lets_in_only_keys_it_lists(journal_keys: Path, tmp_path: Path) -> None:
    keys.add_controller(journal_keys, "stranger")
    keys.revoke_controller(journal_keys, "stranger")  # pins the collector, is not trusted
    stranger = keys.load_controller_keys(keys.controller_dir(journal_keys, "stranger"))
    with a_collector(journal_keys, tmp_path / "journal.jsonl") as (ctx, bind):
        for who in ("stranger", "plain"):
            sock = dealer_as(ctx, stranger if who == "stranger" else None)
            try:
                outcome = connect_and_handshake(sock, bind)
            finally:
                sock.close()
            assert outcome != zmq.EVENT_HANDSHAKE_SUCCEEDED, who
            if who == "stranger":
                assert outcome == zmq.EVENT_HANDSHAKE_FAILED_AUTH


def test_a_writer_revoked_while_connected_has_its_next_record_refused(
    journal_keys: Path, tmp_path: Path
) -> None:
    """The collector checked keys at the handshake only: a writer revoked while connected
    went on writing."""
    keys.add_controller(journal_keys, "leaving")
    leaving = keys.load_controller_keys(keys.controller_dir(journal_keys, "leaving"))
    journal = tmp_path / "journal.jsonl"
    with a_collector(journal_keys, journal) as (ctx, bind):
        sock = dealer_as(ctx, leaving)
        sock.connect(bind)
        try:
            assert answer(sock, b"before", record("before"))[1] == b"ack"
            keys.revoke_controller(journal_keys, "leaving")
            refused = answer(sock, b"after", record("after"))
        finally:
            sock.close()
    assert refused[:3] == [VERSION, REFUSED, b"after"] and b"key-refused" in refused[3]
    assert [r["record_id"] for r in read_journal(journal)] == ["before"]


# -- quotas (issue 23, class 5: one key filled 299 MiB in 3.5 s) ------------------------------


def test_quotas_hold_the_journal_and_each_writer_and_say_which_refused() -> None:
    quotas = journal_collector.Quotas(journal_bytes=100, writer_bytes_per_hour=60, size=10)
    assert quotas.take("a", 50, now=0.0) is None
    refused = quotas.take("a", 20, now=1.0)
    assert refused is not None and refused.startswith("writer-quota:"), refused
    assert "--max-writer-mib-per-hour" in refused
    assert quotas.take("b", 30, now=2.0) is None  # another key has an hour of its own
    full = quotas.take("b", 20, now=3.0)  # 10 + 50 + 30 + 20 > 100
    assert full is not None and full.startswith("journal-full:") and "--max-journal-mib" in full
    assert quotas.size == 90  # what was refused is not counted
    assert quotas.take("a", 10, now=3600.0) is None  # a's next hour
    assert quotas.take("a", 1, now=3601.0) is not None  # and now the journal is full


def spawn_collector(
    roles: processes.Roles, keydir: Path, path: Path, bind: str, *limits: str
) -> processes.Child:
    return roles.spawn(
        "collector",
        *("--bind", bind, "--path", str(path), *limits),
        *("--keys", str(keys.node_dir(keydir, "collector"))),
        module=COLLECTOR,
    )


def test_a_full_journal_refuses_records_naming_its_limit_and_stays_full_after_a_restart(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    sock, bind = link
    path = tmp_path / "journal.jsonl"
    pad = "x" * (MAX_RECORD_BYTES - 200)
    with processes.Roles(COLLECTOR) as roles:
        first = spawn_collector(roles, journal_keys, path, bind, "--max-journal-mib", "2")
        replies = [answer(sock, f"r{n}".encode(), record(f"r{n}", pad=pad)) for n in range(3)]
        assert [reply[1] for reply in replies] == [b"ack", b"ack", REFUSED], replies
        assert b"journal-full" in replies[2][3] and b"--max-journal-mib" in replies[2][3]
        first.kill(signal.SIGTERM)
        spawn_collector(roles, journal_keys, path, bind, "--max-journal-mib", "2")
        again = answer(sock, b"r3", record("r3", pad=pad))
        assert again[1] == REFUSED and b"journal-full" in again[3], again  # counted from the file
    assert [r["record_id"] for r in read_journal(path)] == ["r0", "r1"]


def test_one_writer_past_its_hourly_quota_is_refused_naming_it(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    sock, bind = link
    pad = "x" * (MAX_RECORD_BYTES - 200)
    with processes.Roles(COLLECTOR) as roles:
        spawn_collector(
            roles, journal_keys, tmp_path / "j.jsonl", bind, "--max-writer-mib-per-hour", "2"
        )
        replies = [answer(sock, f"w{n}".encode(), record(f"w{n}", pad=pad)) for n in range(3)]
    assert [reply[1] for reply in replies] == [b"ack", b"ack", REFUSED], replies
    assert b"writer-quota" in replies[2][3] and b"--max-writer-mib-per-hour" in replies[2][3]
