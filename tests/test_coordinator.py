"""coordinator: MDP/0.2 to the frame against spec-written peers, plus our extensions."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_patterns import protocol as mdp
from cluster_patterns.coordinator import Config
from tests.mdp_peers import RawClient, RawWorker, running_coordinator
from zmq_basics import lesson


@pytest.fixture
def ctx() -> Iterator[lesson.Ctx]:
    with zmq.Context() as context:
        context.linger = 0
        yield context


@pytest.mark.parametrize("client_form", [False, True])
@pytest.mark.parametrize("worker_form", [False, True])
def test_request_reply_in_both_framings(
    ctx: lesson.Ctx, client_form: bool, worker_form: bool
) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        worker, client = RawWorker(ctx, where, worker_form), RawClient(ctx, where, client_form)
        worker.ready(b"echo")
        client.request(b"echo", b"one", b"two")
        header, command, address, empty, *body = worker.recv_skipping_heartbeats()
        assert (header, command, empty, body) == (b"MDPW02", b"\x02", b"", [b"one", b"two"])
        worker.final(address, b"ONE", b"TWO")
        assert client.recv() == [b"MDPC02", b"\x03", b"echo", b"ONE", b"TWO"]
        worker.close()
        client.close()


def test_mmi_service(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        worker, client = RawWorker(ctx, where), RawClient(ctx, where)
        worker.ready(b"echo")
        worker.recv()  # the first heartbeat proves READY was processed
        for asked, answer in [(b"echo", b"200"), (b"nothing", b"404")]:
            client.request(b"mmi.service", asked)
            assert client.recv() == [b"MDPC02", b"\x03", b"mmi.service", answer]
        client.request(b"mmi.unknown", b"x")
        assert client.recv()[-1] == b"501"
        worker.close()
        client.close()


def test_busy_workers_get_heartbeats_too(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        worker, client = (
            RawWorker(ctx, coordinator.endpoints[0]),
            RawClient(ctx, coordinator.endpoints[0]),
        )
        worker.ready(b"echo")
        client.request(b"echo", b"x")
        assert worker.recv_skipping_heartbeats()[1] == b"\x02"  # now holding a task
        assert worker.recv() == [b"MDPW02", b"\x05"]  # and still heartbeated
        worker.close()
        client.close()


@pytest.mark.parametrize(
    "unexpected",
    [
        [b"MDPW02", b"\x04", b"nobody", b"", b"x"],  # FINAL for a task it does not hold
        [b"MDPW02", b"\x02", b"client", b"", b"x"],  # REQUEST is the broker's to send
    ],
)
def test_valid_but_unexpected_commands_get_disconnect(
    ctx: lesson.Ctx, unexpected: list[bytes]
) -> None:
    with running_coordinator(ctx) as coordinator:
        worker = RawWorker(ctx, coordinator.endpoints[0])
        worker.ready(b"echo")
        worker.recv()
        worker.send(*unexpected)
        assert worker.recv_skipping_heartbeats() == [b"MDPW02", b"\x06"]
        worker.close()


def test_heartbeat_from_an_unknown_worker_gets_disconnect(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        stranger = RawWorker(ctx, coordinator.endpoints[0])
        stranger.heartbeat()
        assert stranger.recv() == [b"MDPW02", b"\x06"]
        stranger.close()


garbage = st.lists(
    st.one_of(
        st.binary(max_size=16),
        st.sampled_from([b"", b"MDPC02", b"MDPW02", b"\x01", b"\x02", b"\x04", b"\x05"]),
    ),
    min_size=1,
    max_size=7,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=st.lists(garbage, min_size=1, max_size=10))
def test_garbage_never_stops_service(ctx: lesson.Ctx, frames: list[list[bytes]]) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        attacker = RawWorker(ctx, where, name=b"attacker")
        for message in frames:
            attacker.send(*message)
        worker, client = RawWorker(ctx, where), RawClient(ctx, where)
        worker.ready(b"echo")
        client.request(b"echo", b"still here?")
        address = worker.recv_skipping_heartbeats()[2]
        worker.final(address, b"yes")
        assert client.recv()[-1] == b"yes"
        for peer in (attacker, worker, client):
            peer.close()
        assert coordinator.counters["dropped.internal-error"] == 0


def test_malformed_messages_are_counted(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx, Config(max_message_bytes=1000)) as coordinator:
        client = RawClient(ctx, coordinator.endpoints[0])
        client.send(b"HELLO?")
        client.send(b"MDPC02", b"\x07", b"echo")
        client.request(b"echo", b"x" * 2000)  # above our limit, below libzmq's cut-off
        client.request(b"mmi.service", b"echo")  # the reply proves all three were handled
        assert client.recv()[-1] == b"404"
        assert coordinator.counters["dropped.short"] == 1
        assert coordinator.counters["dropped.bad-command"] == 1
        assert coordinator.counters["dropped.oversized"] == 1
        client.close()


def test_frames_beyond_maxmsgsize_cut_off_only_that_peer(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx, Config(max_message_bytes=1000)) as coordinator:
        where = coordinator.endpoints[0]
        flooder, client = RawClient(ctx, where), RawClient(ctx, where)
        flooder.request(b"echo", b"x" * 100_000)  # libzmq drops this connection
        client.request(b"mmi.service", b"echo")
        assert client.recv()[-1] == b"404"
        flooder.close()
        client.close()


def test_no_worker_means_an_error_reply_after_the_service_timeout(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx, Config(service_timeout_s=0.3)) as coordinator:
        client = RawClient(ctx, coordinator.endpoints[0])
        client.request(b"nobody-offers-this", b"corr-1")
        _header, command, service, corr, mark, reason = client.recv()
        assert (command, service, corr, mark) == (
            b"\x03",
            b"nobody-offers-this",
            b"corr-1",
            mdp.ERROR_MARK,
        )
        assert b"no worker" in reason
        client.close()


def test_full_queue_answers_with_an_error_and_stays_bounded(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx, Config(max_queue=5)) as coordinator:
        client = RawClient(ctx, coordinator.endpoints[0])
        for n in range(50):
            client.request(b"echo", b"%d" % n)
        errors = [client.recv() for _ in range(45)]
        assert all(mdp.error_reason(frames[3:]) == "queue for echo is full" for frames in errors)
        assert sum(len(s.queue) for s in coordinator.services.values()) == 5
        client.close()


def test_dead_worker_task_is_requeued_then_fails_after_retries(ctx: lesson.Ctx) -> None:
    config = Config(max_retries=1, heartbeat_s=0.1, liveness=2)
    with running_coordinator(ctx, config) as coordinator:
        where = coordinator.endpoints[0]
        client = RawClient(ctx, where)
        client.request(b"echo", b"corr")
        for attempt in (1, 2):  # each worker shows its rhythm, takes the task, and dies
            worker = RawWorker(ctx, where, name=b"doomed-%d" % attempt)
            worker.ready(b"echo")
            got_task = False
            for _ in range(4):  # beat back at the coordinator's pace: a 0.1 s rhythm
                got_task |= worker.recv(timeout_ms=10_000)[1] == b"\x02"
                worker.heartbeat()
            if not got_task:
                assert worker.recv_skipping_heartbeats(timeout_ms=10_000)[1] == b"\x02"
            worker.close()
        reply = client.recv(timeout_ms=10_000)
        assert reply[3] == b"corr" and "gave up after 2 attempts" in (
            mdp.error_reason(reply[3:]) or ""
        )
        client.close()


def test_pinned_and_tagged_requests(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        plain, gpu = RawWorker(ctx, where, name=b"plain"), RawWorker(ctx, where, name=b"gpu1")
        plain.ready(b"echo")
        gpu.ready(b"echo#gpu")
        client = RawClient(ctx, where)
        for service in (b"echo#gpu", b"echo@gpu1"):
            client.request(service, b"x")
            address = gpu.recv_skipping_heartbeats()[2]
            gpu.final(address, b"from gpu")
            assert client.recv() == [b"MDPC02", b"\x03", service, b"from gpu"]
        for peer in (plain, gpu, client):
            peer.close()


def test_pipelined_requests_get_one_final_each(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        worker, client = RawWorker(ctx, where), RawClient(ctx, where)
        worker.ready(b"echo")
        for n in range(20):
            client.request(b"echo", b"%d" % n)
        for _ in range(20):
            frames = worker.recv_skipping_heartbeats()
            worker.final(frames[2], *frames[4:])
        replies = sorted(int(client.recv()[3]) for _ in range(20))
        assert replies == list(range(20))
        with pytest.raises(TimeoutError):
            client.recv(timeout_ms=300)
        worker.close()
        client.close()


def test_every_state_change_is_published(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        sub = ctx.socket(zmq.SUB)
        sub.connect(coordinator.events_endpoint)
        sub.subscribe(b"")
        assert sub.poll(3000)  # the stats snapshot proves the subscription is live
        worker, client = (
            RawWorker(ctx, coordinator.endpoints[0], name=b"w"),
            RawClient(ctx, coordinator.endpoints[0]),
        )
        worker.ready(b"echo")
        client.request(b"echo", b"x")
        worker.final(worker.recv_skipping_heartbeats()[2], b"y")
        client.recv()
        worker.send(b"MDPW02", b"\x06")
        topics: list[str] = []
        while "worker.left" not in topics and sub.poll(3000):
            topic, body = sub.recv_multipart()
            assert "ts" in json.loads(body)
            topics.append(topic.decode())
        for expected in (
            "worker.joined",
            "worker.ready",
            "task.queued",
            "task.assigned",
            "task.done",
            "worker.left",
        ):
            assert expected in topics
        for closable in (sub, worker, client):
            closable.close()


def test_drain_refuses_new_work_and_lets_running_tasks_finish(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx) as coordinator:
        where = coordinator.endpoints[0]
        worker, client = RawWorker(ctx, where), RawClient(ctx, where)
        worker.ready(b"echo")
        client.request(b"echo", b"running")
        address = worker.recv_skipping_heartbeats()[2]
        coordinator.request_drain()
        client.request(b"echo", b"refused")
        assert mdp.error_reason(client.recv()[3:]) == "coordinator draining"
        worker.final(address, b"finished")
        assert client.recv()[-1] == b"finished"
        # Sent only once the loop has ended by itself: go and find the next coordinator.
        assert worker.recv_skipping_heartbeats() == [b"MDPW02", b"\x06"]
        worker.close()
        client.close()


def test_quiet_when_busy_services_are_allowed_the_busy_timeout(ctx: lesson.Ctx) -> None:
    config = Config(heartbeat_s=0.05, quiet_when_busy=frozenset({b"slow"}))
    with running_coordinator(ctx, config) as coordinator:
        where = coordinator.endpoints[0]
        worker, client = RawWorker(ctx, where), RawClient(ctx, where)
        worker.ready(b"slow")
        for _ in range(3):
            worker.heartbeat()  # a fast rhythm, learned...
            worker.recv()
        client.request(b"slow", b"x")
        address = worker.recv_skipping_heartbeats()[2]
        for _ in range(20):  # ...then a second of silence while holding the task
            worker.recv()
        worker.final(address, b"done")
        assert client.recv()[-1] == b"done"
        assert coordinator.counters["replies"] == 1
        worker.close()
        client.close()


def test_a_separate_worker_endpoint(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx, worker_endpoint=lesson.ANY_LOCAL_PORT) as coordinator:
        front, back = coordinator.endpoints
        worker, client = RawWorker(ctx, back), RawClient(ctx, front)
        worker.ready(b"echo")
        client.request(b"echo", b"x")
        address = worker.recv_skipping_heartbeats()[2]
        worker.final(address, b"via the worker endpoint")
        assert client.recv()[-1] == b"via the worker endpoint"
        worker.close()
        client.close()


def test_a_client_that_never_reads_costs_bounded_memory(ctx: lesson.Ctx) -> None:
    with running_coordinator(ctx, Config(hwm=50)) as coordinator:
        where = coordinator.endpoints[0]
        worker = RawWorker(ctx, where)
        worker.ready(b"echo")
        sleeper = ctx.socket(zmq.DEALER)
        sleeper.linger = 0
        sleeper.rcvhwm = 50  # before connect(), so its pipe gets it
        sleeper.connect(where)
        big = b"x" * 100_000  # large replies fill the kernel buffers quickly
        for n in range(400):
            sleeper.send_multipart([b"MDPC02", b"\x01", b"echo", b"%d" % n, big])
            frames = worker.recv_skipping_heartbeats()
            worker.final(frames[2], *frames[4:])
        # It never read a reply: those beyond the queues were dropped and counted.
        client = RawClient(ctx, where)
        client.request(b"mmi.service", b"echo")
        assert client.recv()[-1] == b"200"  # and everyone else is still served
        undeliverable = sum(
            v for k, v in coordinator.counters.items() if k.startswith("undeliverable")
        )
        assert undeliverable > 0
        for peer in (worker, sleeper, client):
            peer.close()
