"""The agent's unread-reply budget with real processes: receipts come back from our executor,
cannot be made up by a controller that does not read, and free the room when a connection
goes. (The memory it saves is measured in test_memory_bounds.py.)"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.agents import RawController, executor, raw_controller, running_agent
from tests.test_agent_hardening import ask
from tests.test_memory_bounds import peak_rss
from tests.test_node_agent import agent_state
from zcl import agent_wire as wire
from zcl import keys
from zcl.agent.agent_session import MAX_REASON_CHARS
from zcl.agent_wire import MAX_PIECE_BYTES
from zcl.zmq_node_executor import RETURN_RECEIPTS_BYTES, _Link

pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024


@pytest.mark.asyncio
async def test_our_executor_reads_through_a_small_budget_and_leaves_little_unread(
    keydir: Path, tmp_path: Path
) -> None:
    """With a 1 MiB budget, 8 MiB results, a stream and whole folders still come through
    (an executor that returned no receipts would wait for ever after the first), and what
    is left charged to the connection is what waits to go back with the next request."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "big").write_bytes(os.urandom(3 * MiB))
    args = ["--file-root", str(tmp_path), "--max-unread-mib", "1", "--max-unread-total-mib", "1"]
    with running_agent(keydir, *args) as agent:
        async with executor(agent.endpoint, keydir) as ex:
            runs = [ex.run(f"head -c {8 * MiB} /dev/zero", timeout_s=30) for _ in range(4)]
            results = await asyncio.wait_for(asyncio.gather(*runs), 60)
            assert [len(r.stdout) for r in results] == [8 * MiB] * 4
            async with ex.stream(f"head -c {8 * MiB} /dev/zero") as output:
                streamed = sum([len(data) async for _, data in output])
            assert streamed == 8 * MiB
            await ex.get_file(str(tmp_path / "files"), tmp_path / "copy")
            assert (tmp_path / "copy" / "big").read_bytes() == (tmp_path / "files/big").read_bytes()
            state = await ex.ping()
            assert state["counters"].get("held", 0) > 0  # the budget was met, and waited on
            assert state["unread_bytes"] <= RETURN_RECEIPTS_BYTES + 64 * 1024


def test_a_stream_pauses_at_the_budget_for_a_controller_that_credits_without_reading(
    keydir: Path,
) -> None:
    """A window is paced by the controller's word: one that sends credit and reads nothing
    had the agent send on, into libzmq's queue. The unread budget counts what it has not
    shown it read, so the command pauses there."""
    with running_agent(keydir, "--max-unread-mib", "1") as agent, zmq.Context() as ctx:
        watcher = RawController(ctx, agent.endpoint, keydir)
        liar = RawController(ctx, agent.endpoint, keydir, rcvhwm=1, rcvbuf=64 * 1024)
        # A window the budget meets first: only the budget can pause this stream.
        body = {"command": "head -c 100000000 /dev/zero", "stream": True, "window": 64 * MiB}
        before = peak_rss(agent.process.pid)
        liar.request(b"s", wire.RUN, body)
        for _ in range(20):  # credit as fast as it can, and forged receipts
            for _ in range(500):
                liar.request(b"c", wire.CREDIT, {"target": b"s", "bytes": 64 * 1024})
            liar.request(b"r", wire.READ, {"read": [os.urandom(8) for _ in range(100)]})
            state = agent_state(watcher)
            if state["counters"].get("stream.paused"):
                break
        for _ in range(50):  # go on lying: nothing resumes it
            liar.request(b"c", wire.CREDIT, {"target": b"s", "bytes": 64 * MiB})
            liar.request(b"r", wire.READ, {"read": [os.urandom(8) for _ in range(100)]})
        state = agent_state(watcher)
        grown = peak_rss(agent.process.pid) - before
        assert state["running"] == 1 and state["counters"].get("stream.paused") == 1, state
        assert not state["counters"].get("dropped.reply-hwm"), state  # no output was lost
        assert grown < 24 * MiB, grown
        watcher.sock.close()
        liar.sock.close()


def test_a_connection_that_goes_gives_its_unread_room_back(keydir: Path, tmp_path: Path) -> None:
    """The total budget spent by a controller that read nothing and then left: the next
    silence probe finds its connection gone, and the result held for another goes."""
    (tmp_path / "big").write_bytes(os.urandom(2 * MiB))
    args = ["--file-root", str(tmp_path), "--max-unread-total-mib", "1",
            "--controller-timeout", "0.5"]  # fmt: skip
    with running_agent(keydir, *args) as agent, zmq.Context() as ctx:
        reader = RawController(ctx, agent.endpoint, keydir)
        leaver = RawController(ctx, agent.endpoint, keydir, rcvhwm=1, rcvbuf=64 * 1024)
        leaver.request(b"g", wire.GET, {"path": str(tmp_path / "big")})
        while agent_state(reader)["counters"].get("gets", 0) < 1:
            pass
        while agent_state(reader)["operations"]:
            pass  # the leaver's get was answered (into a queue nobody reads)
        reader.request(b"mine", wire.GET, {"path": str(tmp_path / "big")})
        while not agent_state(reader)["held"]:
            pass  # the agent's total is spent: this result waits
        leaver.sock.close()
        reply = reader.reply(timeout_ms=10_000)
        while reply.request_id != b"mine":
            reply = reader.reply(timeout_ms=10_000)
        assert reply.kind == wire.DONE and len(reply.body()["data"]) == 2 * MiB
        assert agent_state(reader)["counters"]["unread.forgotten"] == 1
        reader.sock.close()


def test_a_held_result_is_known_to_the_heartbeat(keydir: Path, tmp_path: Path) -> None:
    """A result waiting for the budget is still the agent's: a ping naming its id must not
    hear it is unknown (the executor fails such a call as lost with a reconnect)."""
    (tmp_path / "big").write_bytes(os.urandom(2 * MiB))
    args = ["--file-root", str(tmp_path), "--max-unread-mib", "1"]
    with running_agent(keydir, *args) as agent, zmq.Context() as ctx:
        reader = RawController(ctx, agent.endpoint, keydir)
        watcher = RawController(ctx, agent.endpoint, keydir)
        for name in (b"g1", b"g2"):
            reader.request(name, wire.GET, {"path": str(tmp_path / "big")})
        while agent_state(watcher)["held"] != 1:
            pass  # the first went, the second waits for the first's receipt
        sent = reader.reply()  # whichever was read from disk first
        assert sent.kind == wire.DONE
        reader.request(b"hb", wire.PING, {"ids": [b"g1", b"g2"]})
        pong = reader.reply()
        assert pong.body()["unknown"] == [sent.request_id]  # answered; the other is held
        reader.request(b"r", wire.READ, {"read": [sent.receipt_to_return()]})
        second = reader.reply()
        assert {second.request_id, sent.request_id} == {b"g1", b"g2"}
        assert second.kind == wire.DONE
        reader.sock.close()
        watcher.sock.close()


# Replies the budget does not charge (pongs, errors) are small by construction, so libzmq's
# queue of them (counted in messages) is small in bytes too.


@pytest.fixture
def controller(keydir: Path, tmp_path: Path) -> Iterator[RawController]:
    with raw_controller(keydir, "--file-root", str(tmp_path)) as raw:
        yield raw


def test_a_ping_asks_about_at_most_so_many_ids(controller: RawController) -> None:
    """Its pong names the unknown ones: 64 MiB of ids was a 64 MiB pong, uncharged."""
    ids = [b"%d" % n for n in range(wire.MAX_PING_IDS)]
    assert ask(controller, wire.PING, {"ids": ids}).kind == wire.PONG
    refused = ask(controller, wire.PING, {"ids": [*ids, b"one-more"]})
    assert refused.kind == wire.ERROR and refused.body()["code"] == "bad-field"


def test_receipts_come_back_at_most_so_many_a_message(controller: RawController) -> None:
    receipts = [os.urandom(8) for _ in range(wire.MAX_RECEIPTS + 1)]
    refused = ask(controller, wire.READ, {"read": receipts})
    assert refused.kind == wire.ERROR and refused.body()["code"] == "bad-field"
    refused = ask(controller, wire.READ, {"read": "not a list"})
    assert refused.body()["code"] == "bad-field"


def test_an_error_reason_is_cut_short(controller: RawController, tmp_path: Path) -> None:
    """A reason may quote what the request sent (a path of 4,000 bytes here)."""
    path = str(tmp_path) + "/" + "/".join(["d" * 200] * 19)
    refused = ask(controller, wire.GET, {"path": path})
    assert refused.kind == wire.ERROR and refused.body()["code"] == "file-error"
    assert len(refused.body()["reason"]) == MAX_REASON_CHARS


def test_a_get_piece_is_at_most_so_long(controller: RawController, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    asked = {"path": str(tmp_path / "f"), "offset": 0, "length": MAX_PIECE_BYTES}
    assert ask(controller, wire.GET, asked).kind == wire.DONE
    refused = ask(controller, wire.GET, dict(asked, length=MAX_PIECE_BYTES + 1))
    assert refused.kind == wire.ERROR and refused.body()["code"] == "bad-field"


def test_one_keys_many_connections_share_one_budget(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Each connection had a budget of its own: eight connections of one key that read
    nothing spent the agent's whole total, and every other controller's results waited.
    The budget is the key's: its other connections' results wait instead."""
    keydir = tmp_path_factory.mktemp("keys")
    keys.generate(keydir, nodes=["node1"], controllers=["runner", "intruder"])
    (tmp_path / "big").write_bytes(os.urandom(2 * MiB))
    get = {"path": str(tmp_path / "big")}
    args = ["--file-root", str(tmp_path), "--max-unread-mib", "3", "--max-unread-total-mib", "8"]
    with running_agent(keydir, *args) as agent, zmq.Context() as ctx:
        watcher = RawController(ctx, agent.endpoint, keydir)
        intruders = [
            RawController(ctx, agent.endpoint, keydir, "intruder", rcvhwm=1, rcvbuf=64 * 1024)
            for _ in range(8)
        ]
        for intruder in intruders:
            intruder.request(b"g", wire.GET, get)
        while agent_state(watcher)["counters"].get("gets", 0) < 8:
            pass
        while (state := agent_state(watcher))["operations"] != state["held"]:
            pass  # every get read from disk: sent, or held for the budget
        assert state["held"] == 7  # the key's budget paid for one
        runner = RawController(ctx, agent.endpoint, keydir)
        runner.request(b"mine", wire.GET, get)
        reply = runner.reply(timeout_ms=10_000)
        assert reply.request_id == b"mine" and len(reply.body()["data"]) == 2 * MiB
        for sock in (watcher, runner, *intruders):
            sock.sock.close()


def test_every_stream_the_budget_pays_for_pauses_at_it(keydir: Path) -> None:
    """Each stream paused only after its own chunk past the budget, so eight streams of one
    controller went eight chunks over it. All pause once it is met."""
    with running_agent(keydir, "--max-unread-mib", "1") as agent, zmq.Context() as ctx:
        watcher = RawController(ctx, agent.endpoint, keydir)  # the same key: its account
        reader = RawController(ctx, agent.endpoint, keydir, rcvhwm=1, rcvbuf=64 * 1024)
        for number in range(8):
            body = {"command": "head -c 100000000 /dev/zero", "stream": True}
            reader.request(b"s%d" % number, wire.RUN, body)
        while (state := agent_state(watcher))["counters"].get("stream.paused", 0) < 8:
            pass
        assert state["running"] == 8
        assert state["unread_bytes"] <= MiB + 64 * 1024, state["unread_bytes"]
        watcher.sock.close()
        reader.sock.close()


def test_a_stream_started_once_the_budget_is_met_waits_before_its_first_chunk(
    keydir: Path,
) -> None:
    """A stream was paused only after its first chunk, so each one started after the budget
    was met sent a chunk past it (CI saw 1.07 MiB held against 1 MiB)."""
    with running_agent(keydir, "--max-unread-mib", "1") as agent, zmq.Context() as ctx:
        watcher = RawController(ctx, agent.endpoint, keydir)  # the same key: its account
        reader = RawController(ctx, agent.endpoint, keydir, rcvhwm=1, rcvbuf=64 * 1024)
        for number in range(4):  # one after another: the first meets the budget
            body = {"command": "head -c 100000000 /dev/zero", "stream": True}
            reader.request(b"late%d" % number, wire.RUN, body)
            while (state := agent_state(watcher))["counters"].get("stream.paused", 0) <= number:
                pass
        assert state["running"] == 4
        assert state["unread_bytes"] <= MiB + 64 * 1024, state["unread_bytes"]
        watcher.sock.close()
        reader.sock.close()


def test_the_executor_returns_at_most_a_messages_worth_of_receipts_and_keeps_the_rest() -> None:
    """Receipts kept after a send that could not go (a full queue) piled up past what one
    message may carry; the agent refused the whole request, and the executor had already
    dropped them: budget the agent would never give back."""
    link = object.__new__(_Link)  # its batching alone: no socket
    sent: list[list[bytes]] = []
    link.send = sent.append  # type: ignore[method-assign,assignment]
    link.receipts = [os.urandom(8) for _ in range(wire.MAX_RECEIPTS + 10)]
    link.receipt_bytes = 10 * MiB
    first = list(link.receipts)
    link.request(b"1", wire.READ, {})
    assert wire.receipts_field(wire.decode_body(sent[0][3])) == first[: wire.MAX_RECEIPTS]
    assert link.receipts == first[wire.MAX_RECEIPTS :] and link.receipt_bytes
    link.request(b"2", wire.PING, {"ids": []})
    assert wire.decode_body(sent[1][3])["read"] == first[wire.MAX_RECEIPTS :]
    assert link.receipts == [] and link.receipt_bytes == 0
