"""The ZeroMQ journal with real collector and writer processes killed mid-stream."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

from cluster_patterns import processes
from tests.agents import free_port
from zcl import keys
from zcl.errors import JournalError
from zcl.journal import read_journal
from zcl.journal_wire import VERSION
from zcl.zmq_journal import ZmqJournalWriter

COLLECTOR = "zcl.journal_collector"
LOAD = "zcl_lab.journal_load"  # a writer as a process


@pytest.fixture
def journal_keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    keys.generate(folder, nodes=["collector"], controllers=["runner"])
    return folder


@contextmanager
def collector(
    roles: processes.Roles, keydir: Path, path: Path, bind: str
) -> Iterator[processes.Child]:
    yield roles.spawn(
        "collector",
        *("--bind", bind, "--path", str(path)),
        *("--keys", str(keys.node_dir(keydir, "collector"))),
        module=COLLECTOR,
    )


def writer_keys(keydir: Path) -> keys.ControllerKeys:
    return keys.load_controller_keys(keys.controller_dir(keydir, "runner"))


def wait_for_line(child: processes.Child, prefix: str, at_least: int, timeout_s: float = 60) -> int:
    """The first figure the child printed after `prefix` that is at least `at_least`."""

    def enough(line: str) -> bool:
        return line.startswith(prefix) and int(line.rsplit(maxsplit=1)[-1]) >= at_least

    line = child.wait_for_output(enough, timeout_s)
    assert line, f"{child.name} never printed {prefix} >= {at_least}: {child.output[-3:]}"
    return int(line.split()[-1])


def test_a_collector_killed_mid_stream_loses_and_doubles_nothing(
    journal_keys: Path, tmp_path: Path
) -> None:
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    count = 100_000
    with processes.Roles(COLLECTOR) as roles:
        with collector(roles, journal_keys, path, bind) as first:
            writer = roles.spawn(
                "writer",
                *("--endpoint", bind, "--count", str(count), "--report-every", "5000"),
                *("--keys", str(keys.controller_dir(journal_keys, "runner"))),
                timeout_s=30,
                module=LOAD,
            )
            wait_for_line(writer, "acked", 20_000)
            first.kill(signal.SIGKILL)  # mid-stream: records in flight, some maybe half written
        with collector(roles, journal_keys, path, bind):
            assert writer.process.wait(timeout=120) == 0
            assert f"done {count}" in writer.output
    numbers = [record["n"] for record in read_journal(path)]
    assert len(numbers) == count, f"{len(numbers)} records on disk, {count} written"
    assert sorted(numbers) == list(range(count))


def test_what_a_killed_writer_had_acknowledged_is_on_disk(
    journal_keys: Path, tmp_path: Path
) -> None:
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind) as running:
        writer = roles.spawn(
            "writer",
            *("--endpoint", bind, "--count", "100000", "--report-every", "2000"),
            *("--keys", str(keys.controller_dir(journal_keys, "runner"))),
            module=LOAD,
        )
        acknowledged = wait_for_line(writer, "acked", 10_000)
        writer.kill(signal.SIGKILL)
        running.kill(signal.SIGTERM)  # a clean stop: what arrived is written
    on_disk = {record["n"] for record in read_journal(path)}
    assert set(range(acknowledged)) <= on_disk


@pytest.mark.asyncio
async def test_a_resent_record_is_kept_once(journal_keys: Path, tmp_path: Path) -> None:
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind):
        writer = ZmqJournalWriter(bind, writer_keys(journal_keys), resend_after_s=0.05)
        for n in range(50):
            await writer.write({"record_id": f"r{n % 10}", "n": n % 10})  # each id five times
        await writer.close()
    assert sorted(r["record_id"] for r in read_journal(path)) == [f"r{n}" for n in range(10)]


@pytest.mark.asyncio
async def test_write_waits_while_the_collector_is_frozen(
    journal_keys: Path, tmp_path: Path
) -> None:
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind) as frozen:
        writer = ZmqJournalWriter(bind, writer_keys(journal_keys), max_unacked=20)
        await writer.write({"n": -1})
        await writer.flush(timeout_s=10)  # connected and acknowledged
        frozen.signal(signal.SIGSTOP)
        try:
            writes = asyncio.create_task(_write_range(writer, 100))
            while len(writer.unacked) < 20:
                await asyncio.sleep(0)  # let the writes run until the window is full
            done, _ = await asyncio.wait({writes}, timeout=0.5)
            assert not done, "write() did not wait with the window full"
            assert len(writer.unacked) == 20  # memory bounded by the window
        finally:
            frozen.signal(signal.SIGCONT)
        await asyncio.wait_for(writes, 30)
        await writer.close()
    assert len(read_journal(path)) == 101


async def _write_range(writer: ZmqJournalWriter, count: int) -> None:
    for n in range(count):
        await writer.write({"n": n})


@pytest.mark.asyncio
async def test_close_says_so_when_records_cannot_be_delivered(journal_keys: Path) -> None:
    writer = ZmqJournalWriter(f"tcp://127.0.0.1:{free_port()}", writer_keys(journal_keys))
    await writer.write({"n": 1})
    with pytest.raises(JournalError, match="1 records not acknowledged"):
        await writer.close(timeout_s=0.5)


def test_malformed_records_are_refused_and_good_ones_kept(
    journal_keys: Path, tmp_path: Path
) -> None:
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    runner = writer_keys(journal_keys)
    with (
        processes.Roles(COLLECTOR) as roles,
        collector(roles, journal_keys, path, bind),
        zmq.Context() as ctx,
    ):
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_publickey, sock.curve_secretkey = runner.public, runner.secret
        sock.curve_serverkey = runner.agent_key("collector")
        sock.connect(bind)
        for frames in (
            [VERSION, b"a", b"not json\n"],
            [VERSION, b"b", b'{"record_id":"other"}\n'],  # the id does not match
            [VERSION, b"c", b'{"record_id":"c"}'],  # no newline
            [VERSION, b"d", b'{"record_id":"d"}\n{"record_id":"e"}\n'],  # two lines
            [b"ZCJ0", b"f", b'{"record_id":"f"}\n'],
            [VERSION, b"g", b'{"record_id":"g","ok":true}\n'],
        ):
            sock.send_multipart(frames)
        answers: dict[bytes, bytes] = {}
        while len(answers) < 5:  # a, b, c, d refused; f (another version) unanswered; g acked
            assert sock.poll(10_000), f"no answer after {answers}"
            reply = sock.recv_multipart()
            answers[reply[2]] = reply[1]
        sock.close()
    # Each malformed record is refused by name, so its writer can stop resending it; a message
    # in another protocol version gets no answer at all.
    assert answers == {
        b"a": b"refused",
        b"b": b"refused",
        b"c": b"refused",
        b"d": b"refused",
        b"g": b"ack",
    }
    assert read_journal(path) == [{"record_id": "g", "ok": True}]


def test_many_writers_feed_one_collector(journal_keys: Path, tmp_path: Path) -> None:
    path, bind = tmp_path / "journal.jsonl", f"tcp://127.0.0.1:{free_port()}"
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind):
        key_folder = str(keys.controller_dir(journal_keys, "runner"))
        writers = roles.spawn_many(
            [
                (
                    name,
                    [
                        "--endpoint",
                        bind,
                        "--count",
                        "5000",
                        "--name",
                        name,
                        "--keys",
                        key_folder,
                    ],
                )
                for name in ("w1", "w2", "w3")
            ],
            module=LOAD,
        )
        assert [writer.process.wait(timeout=60) for writer in writers] == [0, 0, 0]
    ids = [record["record_id"] for record in read_journal(path)]
    assert len(ids) == len(set(ids)) == 15_000
