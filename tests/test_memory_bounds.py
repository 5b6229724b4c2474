"""The memory-bound tier (issue 23, part 3): a daemon under its worst peer, or its worst
start, holds no more than a stated ceiling, measured as its peak RSS (VmHWM) against the same
daemon's at its lightest. Memory is not time: these figures do not move with the machine's
load, so they are assertions here; the closing note gives the measured values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import zmq

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.benchmark import free_endpoint
from tests.agents import RawController, running_agent
from tests.test_journal_hardening import answer, journal_keys, link, record
from tests.test_node_agent import agent_state
from tests.test_zmq_journal import COLLECTOR, collector
from zcl import agent_wire as wire
from zcl.journal import MAX_RECORD_BYTES, read_journal

__all__ = ["journal_keys", "link"]  # fixtures, used by name below
pytestmark = pytest.mark.timeout(300)
MiB = 1024 * 1024
JOURNAL_MIB = 300
START_UP_CEILING = 64 * MiB  # over the same collector's on an empty journal


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def big_journal(path: Path, mib: int) -> int:
    """`mib` records of nearly 1 MiB each, and two lines an older collector let in (so that
    start-up also sets lines aside, rewriting the journal). The records written."""
    filler = "x" * (MAX_RECORD_BYTES - 100)
    with path.open("wb") as out:
        for number in range(mib):
            out.write(json.dumps({"record_id": f"r{number}", "pad": filler}).encode() + b"\n")
            if number in (1, mib // 2):
                out.write(b'{"record_id":"old","x":NaN}\n')
    return mib


def started_peak(
    journal_keys: Path, path: Path, link: tuple[zmq.Socket[bytes], str], record_id: str
) -> int:
    """The collector's peak RSS once it has started on `path` and acked one record."""
    sock, bind = link
    with processes.Roles(COLLECTOR) as roles, collector(roles, journal_keys, path, bind) as child:
        reply = answer(sock, record_id.encode(), record(record_id))
        assert reply[1] == b"ack", reply
        return peak_rss(child.process.pid)


def test_collector_start_up_memory_is_flat_in_the_journal_size(
    journal_keys: Path, tmp_path: Path, link: tuple[zmq.Socket[bytes], str]
) -> None:
    """A 300 MiB journal peaked at 930 MiB (28 MiB empty): the file, its lines and their
    copies at once. Read a line at a time, it costs what one line does."""
    empty = started_peak(journal_keys, tmp_path / "empty.jsonl", link, "first")
    path = tmp_path / "big.jsonl"
    written = big_journal(path, JOURNAL_MIB)
    big = started_peak(journal_keys, path, link, "last")
    print(f"collector peak RSS: empty journal {empty / MiB:.0f} MiB, "
          f"{JOURNAL_MIB} MiB journal {big / MiB:.0f} MiB")  # fmt: skip
    assert big - empty <= START_UP_CEILING, (empty, big)
    records = read_journal(path)
    assert len(records) == written + 1 and records[-1]["record_id"] == "last"
    assert (tmp_path / "big.jsonl.quarantine").read_bytes().count(b"\n") == 2


# -- the node agent under a controller that asks and never reads ----------------------------

FILE_MIB = 16
GETS = 32
UNREAD_MIB = 32
CONCURRENT = 4


def agent_settled(observer: RawController) -> dict[str, Any]:
    """The agent's state once no operation of the attacker's is still at work: each one in
    flight is a reply the agent holds back (all of them, on the old agent, were sent)."""
    for _ in range(2000):
        state = agent_state(observer)
        if state.get("operations", 0) == state.get("held", 0):
            return state
    raise AssertionError("the agent never settled")


def begun(state: dict[str, Any]) -> tuple[int, int]:
    counters = state["counters"]
    return counters.get("gets", 0), counters.get("refused.busy", 0)


def test_a_controller_that_never_reads_costs_the_agent_its_unread_budget(
    keydir: Path, tmp_path: Path
) -> None:
    """32 whole-file gets of a 16 MiB file from a controller that reads nothing grew the agent
    by all 512 MiB: each reply went to libzmq, whose queue counts messages, not bytes, and
    the operation's slot came free. Now a reply the controller has not acknowledged reading
    (its receipt) counts against --max-unread-mib, and one over it waits, keeping its slot:
    the agent holds at most the budget sent and --max-concurrent replies unsent."""
    root = tmp_path / "files"
    root.mkdir()
    (root / "big").write_bytes(os.urandom(FILE_MIB * MiB))
    args = ["--file-root", str(root), "--max-concurrent", str(CONCURRENT),
            "--max-unread-mib", str(UNREAD_MIB)]  # fmt: skip
    with running_agent(keydir, *args) as agent, zmq.Context() as ctx:
        observer = RawController(ctx, agent.endpoint, keydir)
        agent_state(observer)  # up and answering
        before = peak_rss(agent.process.pid)
        # A DEALER that takes one message in and then leaves the rest in the kernel and in
        # the agent: it reads nothing of its own accord.
        attacker = RawController(ctx, agent.endpoint, keydir, rcvhwm=1, rcvbuf=64 * 1024)
        for number in range(GETS):
            state = agent_settled(observer)
            if state.get("held", 0) >= CONCURRENT:
                break  # every slot holds an unread reply: the agent serves this key no more
            attacker.request(b"g%d" % number, wire.GET, {"path": str(root / "big")})
            attacker.request(b"r", wire.READ, {"read": [os.urandom(8) for _ in range(64)]})
            while sum(begun(agent_state(observer))) == sum(begun(state)):
                pass  # until the get has begun (or been refused)
        grown = peak_rss(agent.process.pid) - before
        state = agent_settled(observer)
        print(f"agent peak RSS grew {grown / MiB:.0f} MiB under {GETS} unread gets of "
              f"{FILE_MIB} MiB (held {state.get('held')}, budget {UNREAD_MIB} MiB)")  # fmt: skip
        ceiling = (UNREAD_MIB + CONCURRENT * 2 * FILE_MIB + 64) * MiB  # a read and its copy
        assert grown <= ceiling, (grown, state)
        assert state["held"] == CONCURRENT
        observer.sock.close()
        attacker.sock.close()


# -- the coordinator under clients that send big requests for a service nobody serves --------

CLIENTS, REQUESTS_EACH, REQUEST_KIB = 8, 64, 512
HELD_MIB, CLIENT_MIB = 64, 16
PER_ROUND = 4  # requests each client sends before the coordinator has read them all


def test_big_requests_for_nobody_cost_the_coordinator_its_held_budget() -> None:
    """256 MiB of 512 KiB requests for a service no worker serves, from 8 clients: the old
    coordinator queued them all (1 GB in the second round's attack). It now holds at most
    --max-held-mib of requests in all and --max-client-mib per client, refusing the rest."""
    events_at, clients_at = free_endpoint(), free_endpoint()
    with processes.Roles("cluster_patterns.coordinator") as roles:
        coordinator = roles.spawn(
            "coordinator",
            *("--endpoint", clients_at, "--events", events_at, "--insecure"),
            *("--max-held-mib", str(HELD_MIB), "--max-client-mib", str(CLIENT_MIB)),
            *("--service-timeout", "60"),
        )
        with zmq.Context() as ctx, ctx.socket(zmq.SUB) as watcher:
            ctx.linger = 0
            watcher.connect(events_at)
            watcher.subscribe(b"stats")
            assert watcher.poll(10_000), "no stats at start"
            watcher.recv_multipart()
            before = peak_rss(coordinator.process.pid)
            clients = [ctx.socket(zmq.DEALER) for _ in range(CLIENTS)]
            body = os.urandom(REQUEST_KIB * 1024)
            for client in clients:
                client.linger = 0
                client.connect(clients_at)
            # In rounds of 16 MiB, each read before the next is sent: what libzmq has taken in
            # and the coordinator not yet read is not the coordinator's to bound (SECURITY.md).
            counters: dict[str, int] = {}
            for round_number in range(1, REQUESTS_EACH // PER_ROUND + 1):
                for client in clients:
                    for _ in range(PER_ROUND):
                        client.send_multipart([mdp.CLIENT, mdp.C_REQUEST, b"nobody", body])
                while counters.get("requests", 0) < CLIENTS * PER_ROUND * round_number:
                    assert watcher.poll(30_000), f"stats stopped at {counters}"
                    counters = json.loads(watcher.recv_multipart()[1])["counters"]
            grown = peak_rss(coordinator.process.pid) - before
            for client in clients:
                client.close()
    sent = CLIENTS * REQUESTS_EACH * REQUEST_KIB * 1024
    print(f"coordinator peak RSS grew {grown / MiB:.0f} MiB under {sent / MiB:.0f} MiB of "
          f"requests for nobody (--max-held-mib {HELD_MIB})")  # fmt: skip
    assert grown <= (HELD_MIB + 64) * MiB, grown
    assert counters["rejected"] >= CLIENTS * REQUESTS_EACH - HELD_MIB * 2, counters  # 2 a MiB
