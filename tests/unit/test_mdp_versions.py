"""MDP/0.1 (RFC 7) beside MDP/0.2 (RFC 18) in the coordinator's rules: the header picks the
command table, each peer is answered in its own version, and the colliding codes are never
read in the wrong table. Frames are written here as RFC 7's tables give them, not built with
the code under test."""

from __future__ import annotations

import pytest

from cluster_patterns import protocol as mdp
from cluster_patterns.coordinator_core import FRONTEND, CoordinatorCore, Outgoing

# RFC 7, as the spec writes the frames (after the ROUTER's identity frame)
V1_CLIENT, V1_WORKER = b"MDPC01", b"MDPW01"
V1_READY, V1_REQUEST, V1_REPLY, V1_HEARTBEAT, V1_DISCONNECT = (bytes([c]) for c in range(1, 6))


def sent_to(peer: bytes, outbox: list[Outgoing]) -> list[list[bytes]]:
    return [out.frames[1:] for out in outbox if out.frames[0] == peer]


def v1_worker_ready(core: CoordinatorCore, worker: bytes, now: float = 0.0) -> None:
    core.handle(FRONTEND, [worker, b"", V1_WORKER, V1_READY, b"echo"], now)


def test_an_mdp01_client_and_worker_are_served_each_in_its_own_version() -> None:
    core = CoordinatorCore()
    v1_worker_ready(core, b"w1")
    core.handle(FRONTEND, [b"c1", b"", V1_CLIENT, b"echo", b"hello"], 1.0)
    (request,) = [m for m in sent_to(b"w1", core.take_outbox()) if m[2] == V1_REQUEST]
    assert request == [b"", V1_WORKER, V1_REQUEST, b"c1", b"", b"hello"]
    core.handle(FRONTEND, [b"w1", b"", V1_WORKER, V1_REPLY, b"c1", b"", b"hello"], 1.1)
    assert sent_to(b"c1", core.take_outbox()) == [[b"", V1_CLIENT, b"echo", b"hello"]]


def test_the_colliding_codes_are_read_in_the_table_their_header_names() -> None:
    """0x03 is REPLY in 0.1 (a result) and PARTIAL in 0.2; 0x04 HEARTBEAT and FINAL; 0x05
    DISCONNECT and HEARTBEAT."""
    v1 = mdp.parse_at_broker([b"w", b"", V1_WORKER, b"\x03", b"c", b"", b"x"])
    v2 = mdp.parse_at_broker([b"w", mdp.WORKER, b"\x03", b"c", b"", b"x"])
    assert (v1.command, v1.version, v2.command, v2.version) == (mdp.W_FINAL, 1, mdp.W_PARTIAL, 2)
    assert mdp.parse_at_broker([b"w", b"", V1_WORKER, b"\x04"]).command == mdp.W_HEARTBEAT
    assert mdp.parse_at_broker([b"w", mdp.WORKER, b"\x05"]).command == mdp.W_HEARTBEAT
    assert mdp.parse_at_broker([b"w", b"", V1_WORKER, b"\x05"]).command == mdp.W_DISCONNECT
    with pytest.raises(mdp.ProtocolError):  # 0.1 has no sixth command
        mdp.parse_at_broker([b"w", b"", V1_WORKER, b"\x06"])


def test_heartbeats_and_disconnect_go_to_an_mdp01_worker_in_its_codes() -> None:
    core = CoordinatorCore()
    v1_worker_ready(core, b"w1")
    core.tick(60.0)  # long past its liveness: buried, and told so
    sent = sent_to(b"w1", core.take_outbox())
    assert [b"", V1_WORKER, V1_HEARTBEAT] in sent
    assert sent[-1] == [b"", V1_WORKER, V1_DISCONNECT]
    assert all(m[1] == V1_WORKER for m in sent)  # never a 0.2 header to a 0.1 worker


def test_an_mdp02_workers_partials_reach_an_mdp01_client_as_its_one_reply() -> None:
    """0.1 has no PARTIAL: the client gets the FINAL alone, and the left-out PARTIAL is
    counted."""
    core = CoordinatorCore()
    core.handle(FRONTEND, [b"w2", mdp.WORKER, mdp.W_READY, b"echo"], 0.0)
    core.handle(FRONTEND, [b"c1", b"", V1_CLIENT, b"echo", b"x"], 0.1)
    core.take_outbox()
    core.handle(FRONTEND, [b"w2", mdp.WORKER, mdp.W_PARTIAL, b"c1", b"", b"part"], 0.2)
    core.handle(FRONTEND, [b"w2", mdp.WORKER, mdp.W_FINAL, b"c1", b"", b"done"], 0.3)
    assert sent_to(b"c1", core.take_outbox()) == [[b"", V1_CLIENT, b"echo", b"done"]]
    assert core.counters["dropped.partial-to-mdp01-client"] == 1


def test_an_mdp01_client_is_served_by_an_mdp02_worker_and_the_other_way() -> None:
    core = CoordinatorCore()
    core.handle(FRONTEND, [b"w2", mdp.WORKER, mdp.W_READY, b"echo"], 0.0)
    v1_worker_ready(core, b"w1")
    core.handle(FRONTEND, [b"c1", b"", V1_CLIENT, b"echo", b"from 0.1"], 0.1)
    core.handle(FRONTEND, [b"c2", mdp.CLIENT, mdp.C_REQUEST, b"echo", b"from 0.2"], 0.1)
    out = core.take_outbox()
    (to_w2,) = [m for m in sent_to(b"w2", out) if m[:2] == [mdp.WORKER, mdp.W_REQUEST]]
    (to_w1,) = [m for m in sent_to(b"w1", out) if m[2:3] == [V1_REQUEST]]
    for worker, sent in ((b"w2", to_w2), (b"w1", to_w1)):
        client, body = sent[-3], sent[-1]
        if worker == b"w2":
            core.handle(FRONTEND, [worker, mdp.WORKER, mdp.W_FINAL, client, b"", body], 0.2)
        else:
            core.handle(FRONTEND, [worker, b"", V1_WORKER, V1_REPLY, client, b"", body], 0.2)
    out = core.take_outbox()
    assert sent_to(b"c1", out) == [[b"", V1_CLIENT, b"echo", b"from 0.1"]]
    assert sent_to(b"c2", out) == [[mdp.CLIENT, mdp.C_FINAL, b"echo", b"from 0.2"]]


def test_mmi_answers_both_versions() -> None:
    core = CoordinatorCore()
    v1_worker_ready(core, b"w1")
    core.handle(FRONTEND, [b"c1", b"", V1_CLIENT, b"mmi.service", b"echo"], 0.1)
    core.handle(FRONTEND, [b"c2", mdp.CLIENT, mdp.C_REQUEST, b"mmi.service", b"nope"], 0.1)
    out = core.take_outbox()
    assert sent_to(b"c1", out) == [[b"", V1_CLIENT, b"mmi.service", b"200"]]
    assert sent_to(b"c2", out) == [[mdp.CLIENT, mdp.C_FINAL, b"mmi.service", b"404"]]


def test_our_peers_build_and_read_mdp01_as_rfc7_writes_it() -> None:
    assert mdp.from_client(b"echo", b"x", version=1) == [b"", V1_CLIENT, b"echo", b"x"]
    assert mdp.from_worker(mdp.W_READY, b"echo", version=1) == [b"", V1_WORKER, V1_READY, b"echo"]
    assert mdp.from_worker(mdp.W_FINAL, b"c", b"", b"x", version=1)[2] == V1_REPLY
    assert mdp.parse_at_worker([b"", V1_WORKER, V1_REQUEST, b"c", b"", b"x"]) == (
        mdp.W_REQUEST,
        [b"c", b"", b"x"],
    )
    assert mdp.parse_at_worker([b"", V1_WORKER, V1_HEARTBEAT])[0] == mdp.W_HEARTBEAT
    assert mdp.parse_at_client([b"", V1_CLIENT, b"echo", b"x"]) == (mdp.C_FINAL, b"echo", [b"x"])
    assert mdp.framing_form("0.1") == (True, 1) and mdp.framing_form("spec") == (False, 2)
    with pytest.raises(ValueError, match="no PARTIAL"):
        mdp.to_client(b"c", True, mdp.C_PARTIAL, b"echo", version=1)
