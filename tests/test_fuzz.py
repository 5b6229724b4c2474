"""The fuzz tier: generated frames at the three daemons an attacker with a key can reach.

Hypothesis builds messages that are nearly right (the right version, a real operation or
command, a body of the right type with wrong contents) as well as plain garbage, and sends
them in batches to a real agent, collector and coordinator. After each batch one valid request
must still be served, and at the end the daemon's memory must not have grown beyond a bound:
nothing a peer sends may crash it, wedge it, or make it keep what it should have dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.benchmark import free_endpoint
from tests.agents import RawController, running_agent
from zcl import agent_wire as wire
from zcl import cli, keys
from zcl.journal_wire import ACK, VERSION

GROWTH_LIMIT = 48 << 20  # bytes of resident memory a daemon may gain over the whole run
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

blobs = st.binary(max_size=64)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # what msgpack can carry
    st.floats(),
    st.text(max_size=20),
    blobs,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def fuzzed_growth(
    pid: int,
    messages: st.SearchStrategy[list[bytes]],
    send: Callable[[list[bytes]], object],
    still_serves: Callable[[], object],
) -> int:
    """Send generated batches; after each, a valid request must be served. Returns how many
    bytes of resident memory the daemon gained over the whole run."""
    still_serves()
    before = rss_bytes(pid)

    @FUZZ
    @given(st.lists(messages, min_size=1, max_size=20))
    def batch(generated: list[list[bytes]]) -> None:
        for message in generated:
            if message:
                send(message)
        still_serves()

    batch()
    return rss_bytes(pid) - before


@pytest.fixture
def ctx() -> Iterator[cli.Ctx]:
    with zmq.Context() as context:
        context.linger = 0
        yield context


# -- the node agent ------------------------------------------------------------------------------

agent_fields = st.fixed_dictionaries(
    {},
    optional={
        # The body is what is fuzzed, not the shell: commands that get through do nothing.
        "command": st.one_of(st.sampled_from(["true", "echo fuzz", ":"]), values),
        "timeout_s": st.one_of(st.floats(), st.integers(-(2**63), 2**64 - 1), values),
        "env": st.one_of(st.dictionaries(st.text(max_size=10), st.text(max_size=10)), values),
        "cwd": st.one_of(st.text(max_size=30), values),
        "stream": values,
        "path": st.one_of(st.text(max_size=40), st.just("/tmp/../etc/shadow"), values),
        "data": st.one_of(blobs, values),
        "target": st.one_of(blobs, values),
        "ids": st.one_of(st.lists(blobs, max_size=4), values),
    },
)
agent_messages = st.one_of(
    st.lists(blobs, max_size=6),
    st.tuples(
        st.sampled_from([wire.VERSION, b"ZCA0", b""]),
        blobs,
        st.sampled_from([wire.RUN, wire.CANCEL, wire.PUT, wire.GET, wire.PING, b"nope", b""]),
        agent_fields.map(lambda body: msgpack.packb(body, use_bin_type=True)) | blobs,
    ).map(list),
)


@pytest.mark.timeout(300)
def test_the_agent_survives_generated_requests(keydir: Path, tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    options = ("--file-root", str(root), "--max-concurrent", "8")
    with running_agent(keydir, *options) as agent, zmq.Context() as context:
        context.linger = 0
        raw = RawController(context, agent.endpoint, keydir)
        grown = fuzzed_growth(
            agent.process.pid, agent_messages, lambda m: raw.send(*m), raw.counters
        )
        assert agent.process.poll() is None
        raw.sock.close(linger=0)
    assert grown < GROWTH_LIMIT, f"the agent grew by {grown >> 20} MiB"


# -- the journal collector -----------------------------------------------------------------------

json_lines = st.one_of(
    values.map(lambda v: json.dumps(v, default=repr).encode()),
    st.dictionaries(st.text(max_size=8), values).map(
        lambda d: json.dumps({"record_id": "x", **d}, default=repr).encode() + b"\n"
    ),
    blobs,
    st.sampled_from([40, 200, 100_000]).map(lambda depth: b"[" * depth + b"]" * depth + b"\n"),
)
collector_messages = st.one_of(
    st.lists(blobs, max_size=5),
    st.tuples(st.sampled_from([VERSION, b"ZCJ0"]), blobs, json_lines).map(list),
)


@pytest.mark.timeout(300)
def test_the_collector_survives_generated_records(ctx: cli.Ctx, tmp_path: Path) -> None:
    keydir = tmp_path / "keys"
    keys.generate(keydir, nodes=["collector"], controllers=["runner"])
    controller = keys.load_controller_keys(keys.controller_dir(keydir, "runner"))
    journal = tmp_path / "journal.jsonl"
    args = ["--keys", str(keys.node_dir(keydir, "collector")), "--path", str(journal)]
    with processes.Roles("zcl.journal_collector") as roles:
        collector = roles.spawn("collector", *args, "--bind", "tcp://127.0.0.1:*")
        sock = ctx.socket(zmq.DEALER)
        sock.curve_publickey, sock.curve_secretkey = controller.public, controller.secret
        sock.curve_serverkey = controller.agent_key("collector")
        sock.connect(collector.endpoint)
        count = iter(range(10**9))

        def valid_record_is_acked() -> None:
            record_id = f"valid-{next(count)}".encode()
            line = json.dumps({"record_id": record_id.decode()}).encode() + b"\n"
            sock.send_multipart([VERSION, record_id, line])
            while sock.poll(10_000):
                reply = sock.recv_multipart()
                if reply[:2] == [VERSION, ACK] and record_id in reply[2:]:
                    return
            raise AssertionError("the collector did not acknowledge a valid record")

        try:
            grown = fuzzed_growth(
                collector.process.pid,
                collector_messages,
                sock.send_multipart,
                valid_record_is_acked,
            )
            assert collector.process.poll() is None
        finally:
            sock.close(linger=0)
    assert grown < GROWTH_LIMIT, f"the collector grew by {grown >> 20} MiB"


# -- the coordinator -----------------------------------------------------------------------------

mdp_messages = st.one_of(
    st.lists(blobs, max_size=6),
    st.tuples(
        st.sampled_from([b"", mdp.CLIENT, mdp.WORKER]),
        st.sampled_from([mdp.CLIENT, mdp.WORKER, b"MDPX"]),
        st.sampled_from([mdp.C_REQUEST, mdp.W_READY, mdp.W_HEARTBEAT, mdp.W_FINAL, b"\x09"]),
        st.one_of(st.sampled_from([b"echo", b"echo@w1", b"echo#gpu", b"mmi.service"]), blobs),
        st.lists(blobs, max_size=3),
    ).map(lambda t: [f for f in (t[0], t[1], t[2], t[3]) if f] + t[4]),
)


@pytest.mark.timeout(300)
def test_the_coordinator_survives_generated_messages(ctx: cli.Ctx) -> None:
    endpoint = free_endpoint()
    with processes.Roles("cluster_patterns.coordinator") as roles:
        coordinator = roles.spawn(
            "coordinator", "--endpoint", endpoint, "--events", free_endpoint(), "--insecure"
        )
        roles.spawn(
            "worker", "--coordinator", endpoint, "--name", "w1", module="cluster_patterns.worker"
        )
        fuzzer, client = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
        fuzzer.connect(endpoint)
        client.connect(endpoint)
        count = iter(range(10**9))

        def echo_is_answered() -> None:
            body = b"valid-%d" % next(count)
            client.send_multipart(mdp.from_client(b"echo", body))
            while client.poll(10_000):
                reply: list[Any] = client.recv_multipart()
                if reply[-1] == body:
                    return
            raise AssertionError("the coordinator did not answer a valid request")

        try:
            grown = fuzzed_growth(
                coordinator.process.pid, mdp_messages, fuzzer.send_multipart, echo_is_answered
            )
            assert coordinator.process.poll() is None
        finally:
            fuzzer.close(linger=0)
            client.close(linger=0)
    assert grown < GROWTH_LIMIT, f"the coordinator grew by {grown >> 20} MiB"
