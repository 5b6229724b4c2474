"""The coordinator's rules, fed messages and a number for the clock: no sockets, no threads.

Each test plays peers by handing CoordinatorCore the frames a ROUTER would deliver and reads
what it decided to send (core.outbox) and publish (core.events). Time is whatever `now` says.
"""

from __future__ import annotations

import pytest

from cluster_patterns import protocol as mdp
from cluster_patterns.coordinator_core import (
    BACKEND,
    FRONTEND,
    Config,
    CoordinatorCore,
    Outgoing,
    Route,
)

CLIENT = b"client-1"


def request(
    core: CoordinatorCore, service: bytes, *body: bytes, now: float, client: bytes = CLIENT
) -> None:
    core.handle(FRONTEND, [client, mdp.CLIENT, mdp.C_REQUEST, service, *body], now)


def worker_says(
    core: CoordinatorCore, worker: bytes, *frames: bytes, now: float, route: Route = FRONTEND
) -> None:
    core.handle(route, [worker, mdp.WORKER, *frames], now)


def ready(core: CoordinatorCore, worker: bytes, service: bytes, now: float) -> None:
    worker_says(core, worker, mdp.W_READY, service, now=now)


def final(core: CoordinatorCore, worker: bytes, client: bytes, *body: bytes, now: float) -> None:
    worker_says(core, worker, mdp.W_FINAL, client, b"", *body, now=now)


def beat(core: CoordinatorCore, worker: bytes, now: float) -> None:
    worker_says(core, worker, mdp.W_HEARTBEAT, now=now)


def to(peer: bytes, outbox: list[Outgoing]) -> list[list[bytes]]:
    """The messages (identity frame removed) sent to `peer`, heartbeats left out."""
    return [
        out.frames[1:] for out in outbox if out.frames[0] == peer and out.frames[2:3] != [b"\x05"]
    ]


def tasks_for(peer: bytes, outbox: list[Outgoing]) -> list[list[bytes]]:
    return [m for m in to(peer, outbox) if m[:2] == [mdp.WORKER, mdp.W_REQUEST]]


def replies(outbox: list[Outgoing], client: bytes = CLIENT) -> list[list[bytes]]:
    return [m for m in to(client, outbox) if m[0] == mdp.CLIENT]


def test_a_request_goes_to_the_idle_worker_and_its_final_to_the_client() -> None:
    core = CoordinatorCore()
    ready(core, b"w1", b"echo", now=0.0)
    request(core, b"echo", b"corr", b"hello", now=0.1)
    out = core.take_outbox()
    assert tasks_for(b"w1", out) == [[mdp.WORKER, mdp.W_REQUEST, CLIENT, b"", b"corr", b"hello"]]
    assert [o.assigned_to for o in out] == [b"w1"]
    final(core, b"w1", CLIENT, b"corr", b"HELLO", now=0.2)
    assert replies(core.take_outbox()) == [[mdp.CLIENT, mdp.C_FINAL, b"echo", b"corr", b"HELLO"]]


def test_no_worker_means_an_error_reply_once_the_service_timeout_passes() -> None:
    core = CoordinatorCore(Config(service_timeout_s=2.0))
    request(core, b"nobody-offers-this", b"corr-1", now=0.0)
    core.tick(1.9)
    assert replies(core.take_outbox()) == []
    core.tick(2.0)
    [reply] = replies(core.take_outbox())
    assert reply[:4] == [mdp.CLIENT, mdp.C_FINAL, b"nobody-offers-this", b"corr-1"]
    assert mdp.error_reason(reply[3:]) == "no worker for nobody-offers-this within 2s"


def test_a_full_queue_refuses_at_once_and_stays_bounded() -> None:
    core = CoordinatorCore(Config(max_queue=5))
    for n in range(50):
        request(core, b"echo", b"%d" % n, now=0.0)
    refused = replies(core.take_outbox())
    assert len(refused) == 45
    assert {mdp.error_reason(r[3:]) for r in refused} == {"queue for echo is full"}
    assert len(core.services[b"echo"].queue) == 5


def test_a_dead_workers_task_is_retried_after_a_backoff_then_fails_after_max_retries() -> None:
    core = CoordinatorCore(Config(max_retries=1, heartbeat_s=0.1, liveness=2))
    request(core, b"echo", b"corr", now=0.0)
    now = 0.0
    for attempt, worker in enumerate((b"doomed-1", b"doomed-2"), start=1):
        ready(core, worker, b"echo", now=now)
        for _ in range(4):  # show a 0.1 s rhythm, so death is noticed quickly
            now += 0.1
            beat(core, worker, now)
            core.tick(now)
        assert len(tasks_for(worker, core.take_outbox())) == 1, f"attempt {attempt}"
        now += 0.5  # silence: 2 intervals plus margin have passed
        core.tick(now)
        out = core.take_outbox()
        assert to(worker, out)[-1] == [mdp.WORKER, mdp.W_DISCONNECT]
        assert worker not in core.workers
        now += 2.0  # beyond any back-off
    [reply] = replies(out)  # the second death used the last retry
    assert reply[3] == b"corr"
    assert "gave up after 2 attempts" in (mdp.error_reason(reply[3:]) or "")


def test_a_retried_task_waits_out_its_backoff() -> None:
    core = CoordinatorCore(Config(max_retries=3))
    ready(core, b"w1", b"echo", now=0.0)
    request(core, b"echo", b"x", now=0.0)
    worker_says(core, b"w1", mdp.W_DISCONNECT, now=0.0)  # leaves holding the task
    ready(core, b"w2", b"echo", now=0.0)
    core.take_outbox()
    assert core.services[b"echo"].queue[0].not_before > 0.0
    core.tick(0.0)
    assert tasks_for(b"w2", core.take_outbox()) == []  # not yet: the back-off holds it
    core.tick(1.0)  # the first back-off is at most 50 ms
    assert len(tasks_for(b"w2", core.take_outbox())) == 1


def test_a_late_final_from_a_buried_worker_is_discarded() -> None:
    core = CoordinatorCore(Config(heartbeat_s=0.1, liveness=2))
    ready(core, b"frozen", b"echo", now=0.0)
    for t in (0.1, 0.2, 0.3, 0.4):
        beat(core, b"frozen", t)
    request(core, b"echo", b"corr", now=0.4)
    core.tick(2.0)  # silent: buried, the task queued again
    core.take_outbox()
    beat(core, b"frozen", 2.05)  # it wakes up: a heartbeat first, which is no result
    assert core.counters["dropped.late-result"] == 0
    core.take_outbox()
    final(core, b"frozen", CLIENT, b"corr", b"late", now=2.1)  # then its answer
    out = core.take_outbox()
    assert replies(out) == []
    assert to(b"frozen", out) == [[mdp.WORKER, mdp.W_DISCONNECT]]
    assert core.counters["unexpected.unknown-worker"] == 2
    assert core.counters["dropped.late-result"] == 1  # what local_cluster reports


def test_pinned_and_tagged_requests_reach_only_the_workers_they_name() -> None:
    core = CoordinatorCore()
    ready(core, b"plain", b"echo", now=0.0)
    ready(core, b"gpu1", b"echo#gpu", now=0.0)
    for n, service in enumerate((b"echo#gpu", b"echo@gpu1")):
        request(core, service, b"%d" % n, now=0.1)
        out = core.take_outbox()
        assert tasks_for(b"plain", out) == []
        assert len(tasks_for(b"gpu1", out)) == 1
        final(core, b"gpu1", CLIENT, b"%d" % n, now=0.2)
        assert replies(core.take_outbox())[0][2] == service  # the name as it was asked for


def test_a_pinned_request_waits_for_its_worker_while_others_are_idle() -> None:
    core = CoordinatorCore()
    ready(core, b"w1", b"echo", now=0.0)
    request(core, b"echo@w2", b"x", now=0.0)
    assert tasks_for(b"w1", core.take_outbox()) == []
    ready(core, b"w2", b"echo", now=0.5)
    assert len(tasks_for(b"w2", core.take_outbox())) == 1


def test_least_done_balance_prefers_the_worker_that_did_least() -> None:
    core = CoordinatorCore(Config(balance="least-done"))
    for name in (b"a", b"b"):
        ready(core, name, b"echo", now=0.0)
    request(core, b"echo", b"1", now=0.0)
    final(core, b"a", CLIENT, b"1", now=0.0)  # a did one; b has waited longest but so what
    core.take_outbox()
    request(core, b"echo", b"2", now=0.0)
    assert len(tasks_for(b"b", core.take_outbox())) == 1


def test_pipelined_requests_get_exactly_one_final_each() -> None:
    core = CoordinatorCore()
    ready(core, b"w", b"echo", now=0.0)
    for n in range(20):
        request(core, b"echo", b"%d" % n, now=0.0)
    answered: list[list[bytes]] = []
    for _ in range(20):
        out = core.take_outbox()
        answered += replies(out)
        [task] = tasks_for(b"w", out)  # one at a time: the worker is busy until it answers
        final(core, b"w", task[2], task[4], now=0.0)
    answered += replies(core.take_outbox())
    assert sorted(int(r[3]) for r in answered) == list(range(20))


def test_quiet_when_busy_services_are_allowed_the_busy_timeout() -> None:
    config = Config(heartbeat_s=0.05, quiet_when_busy=frozenset({b"slow"}), busy_timeout_s=60)
    core = CoordinatorCore(config)
    ready(core, b"quiet", b"slow", now=0.0)
    ready(core, b"loud", b"fast", now=0.0)
    for t in (0.05, 0.10, 0.15, 0.20):  # both show a fast rhythm...
        beat(core, b"quiet", t)
        beat(core, b"loud", t)
    request(core, b"slow", b"x", now=0.2)
    request(core, b"fast", b"y", now=0.2)
    core.tick(30.0)  # ...then both fall silent while holding a task
    assert set(core.workers) == {b"quiet"}  # only the service named quiet-when-busy is spared
    core.tick(61.0)
    assert core.workers == {}


def test_drain_refuses_new_work_lets_running_tasks_finish_then_says_goodbye() -> None:
    core = CoordinatorCore(Config(drain_timeout_s=10))
    ready(core, b"w", b"echo", now=0.0)
    request(core, b"echo", b"running", now=0.0)
    core.take_outbox()
    core.request_drain(1.0)
    request(core, b"echo", b"refused", now=1.1)
    assert mdp.error_reason(replies(core.take_outbox())[0][3:]) == "coordinator draining"
    assert not core.drained(2.0)  # a task is still running
    final(core, b"w", CLIENT, b"running", b"finished", now=3.0)
    assert replies(core.take_outbox())[0][-1] == b"finished"
    assert core.drained(3.0)
    core.goodbye()
    assert to(b"w", core.take_outbox()) == [[mdp.WORKER, mdp.W_DISCONNECT]]


def test_drain_fails_what_is_still_running_when_its_time_is_up() -> None:
    core = CoordinatorCore(Config(drain_timeout_s=10))
    ready(core, b"w", b"echo", now=0.0)
    request(core, b"echo", b"stuck", now=0.0)
    core.take_outbox()
    core.request_drain(1.0)
    assert not core.drained(10.9)
    assert core.drained(11.0)
    reason = mdp.error_reason(replies(core.take_outbox())[0][3:])
    assert reason == "coordinator stopped before the task finished"


def test_an_undeliverable_assignment_buries_the_worker_and_retries_the_task() -> None:
    core = CoordinatorCore()
    ready(core, b"gone", b"echo", now=0.0)
    ready(core, b"here", b"echo", now=0.0)
    request(core, b"echo", b"x", now=0.0)
    [assignment] = [o for o in core.take_outbox() if o.assigned_to is not None]
    assert assignment.assigned_to == b"gone"
    core.undeliverable(assignment, "Host unreachable", now=0.0)
    assert b"gone" not in core.workers
    assert core.counters["undeliverable.Host unreachable"] == 1
    core.tick(1.0)  # after the back-off, the other worker gets it
    assert len(tasks_for(b"here", core.take_outbox())) == 1


def test_a_busy_worker_whose_heartbeat_is_unroutable_is_buried_at_once() -> None:
    """Issue 22, finding 9: a busy worker killed behind the coordinator was buried only after
    the liveness silence (for a quiet-when-busy service, the busy timeout: a minute), although
    every heartbeat sent to it already failed with EHOSTUNREACH."""
    config = Config(heartbeat_s=0.1, quiet_when_busy=frozenset({b"slow"}), busy_timeout_s=60)
    core = CoordinatorCore(config)
    ready(core, b"gone", b"slow", now=0.0)
    ready(core, b"here", b"slow", now=0.0)
    request(core, b"slow", b"x", now=0.0)
    assert tasks_for(b"gone", core.take_outbox())
    core.tick(0.15)
    beats = [o for o in core.take_outbox() if o.frames[0] == b"gone"]
    assert beats and all(o.assigned_to is None for o in beats)
    core.undeliverable(beats[0], "Host unreachable", now=0.15, gone=True)
    assert b"gone" not in core.workers
    core.tick(1.5)  # after the retry's back-off, the other worker gets the task
    assert len(tasks_for(b"here", core.take_outbox())) == 1


def test_a_heartbeat_refused_for_a_full_queue_buries_nobody() -> None:
    """EAGAIN says the worker is slow to read, not gone."""
    core = CoordinatorCore(Config(heartbeat_s=0.1))
    ready(core, b"slow", b"echo", now=0.0)
    core.tick(0.15)
    [beat] = [o for o in core.take_outbox() if o.frames[0] == b"slow"]
    core.undeliverable(beat, "Resource temporarily unavailable", now=0.15, gone=False)
    assert b"slow" in core.workers


def test_valid_but_unexpected_commands_get_disconnect_and_the_worker_is_forgotten() -> None:
    core = CoordinatorCore()
    ready(core, b"w", b"echo", now=0.0)
    final(core, b"w", b"nobody", b"x", now=0.1)  # a FINAL for a task it does not hold
    assert to(b"w", core.take_outbox()) == [[mdp.WORKER, mdp.W_DISCONNECT]]
    assert core.workers == {}
    assert core.counters["unexpected.command"] == 1


def test_a_worker_keeps_the_route_it_came_in_on() -> None:
    core = CoordinatorCore()
    worker_says(core, b"w", mdp.W_READY, b"echo", now=0.0, route=BACKEND)
    request(core, b"echo", b"x", now=0.0)
    out = core.take_outbox()
    assert [(o.route, o.frames[0]) for o in out] == [(BACKEND, b"w")]


def test_events_are_queued_only_for_topics_someone_subscribed_to() -> None:
    core = CoordinatorCore()
    ready(core, b"w", b"echo", now=0.0)
    assert core.take_events() == []  # no subscriber: nothing is even built
    core.subscription(b"\x01task.")
    request(core, b"echo", b"x", now=0.0)
    final(core, b"w", CLIENT, b"x", now=0.5)
    topics = [topic for topic, _ in core.take_events()]
    assert topics == ["task.queued", "task.assigned", "task.done"]
    core.subscription(b"\x00task.")
    request(core, b"echo", b"y", now=1.0)
    assert core.take_events() == []


def test_the_stats_event_reports_what_is_queued_and_running() -> None:
    core = CoordinatorCore()
    core.subscription(b"\x01stats")
    ready(core, b"w", b"echo", now=0.0)
    request(core, b"echo", b"running", now=0.0)
    request(core, b"echo", b"waiting", now=0.0)
    core.tick(0.0)
    [(topic, stats)] = core.take_events()
    assert topic == "stats"
    assert (stats["worker_count"], stats["queued"], stats["in_flight"]) == (1, 1, 1)
    assert stats["workers"]["w"]["state"] == "busy"


@pytest.mark.parametrize(
    "frames",
    [
        [b"peer"],
        [b"peer", b"HELLO?"],
        [b"peer", mdp.CLIENT, b"\x07", b"echo"],
        [b"peer", mdp.WORKER, mdp.W_READY],
        [b"peer", mdp.WORKER, b"\x09"],
        [b"peer", mdp.CLIENT, mdp.C_REQUEST, b""],
    ],
)
def test_malformed_messages_are_dropped_and_counted(frames: list[bytes]) -> None:
    core = CoordinatorCore()
    core.handle(FRONTEND, frames, 0.0)
    assert core.take_outbox() == []
    assert sum(v for k, v in core.counters.items() if k.startswith("dropped.")) == 1


# -- bounds a client cannot push past (issue 14, finding 5) -------------------------------------


def test_services_nobody_serves_are_forgotten_once_nothing_waits_for_them() -> None:
    """150,000 names used to stay for good and every tick walked them all."""
    core = CoordinatorCore(Config(service_timeout_s=1.0))
    for n in range(5000):
        request(core, b"nobody-%d" % n, b"x", now=0.0)
    core.tick(2.0)  # every request expired with an error reply
    assert len(replies(core.take_outbox())) == 5000
    assert core.services == {}
    ready(core, b"w", b"echo", now=2.0)
    request(core, b"echo", b"still served", now=2.0)
    assert tasks_for(b"w", core.take_outbox())


def test_a_service_whose_worker_is_busy_survives_the_forgetting() -> None:
    core = CoordinatorCore()
    ready(core, b"w", b"echo", now=0.0)
    request(core, b"echo", b"first", now=0.0)
    core.tick(0.1)  # w holds the task: no queue, nobody idle
    final(core, b"w", CLIENT, b"first", now=0.2)  # w idle again
    request(core, b"echo", b"second", now=0.3)
    assert len(tasks_for(b"w", core.take_outbox())) == 2


def test_new_services_beyond_the_cap_are_refused_at_once() -> None:
    core = CoordinatorCore(Config(max_services=3))
    for n in range(3):
        request(core, b"s%d" % n, b"x", now=0.0)
    request(core, b"one-too-many", b"x", now=0.0)
    [refused] = replies(core.take_outbox())
    assert refused[2] == b"one-too-many" and b"too many services" in refused[-1]
    request(core, b"s1", b"known service", now=0.0)  # a known one still queues
    assert replies(core.take_outbox()) == []
    assert core.counters["rejected"] == 1


def test_prefixes_of_no_topic_are_counted_and_too_many_ask_for_a_fresh_events_socket() -> None:
    """libzmq keeps every prefix a subscriber sends (100,000 random ones: 100 MiB) and offers
    no way to refuse one or drop one subscriber; the coordinator's bound is to reopen the
    events socket once subscribers have sent too many that no topic starts with."""
    core = CoordinatorCore(Config(max_unknown_prefixes=3))
    assert not core.subscription(b"\x01stats") and not core.subscription(b"\x01task.do")
    assert not core.subscription(b"\x01")
    assert [core.subscription(b"\x01invented-%d" % n) for n in range(4)] == [
        False,
        False,
        False,
        True,
    ]
    assert core.counters["subscriptions.unknown"] == 4
    assert b"invented-0" not in core.subscriptions  # a prefix of no topic wants nothing
    core.events_reopened()
    assert core.subscriptions == set()  # the subscribers reconnect and subscribe again
    assert not core.subscription(b"\x01invented-9")
    core.publish("stats", n=1)
    assert core.take_events() == []  # nobody has subscribed again yet
    core.subscription(b"\x01stats")
    core.publish("stats", n=2)
    assert core.take_events() == [("stats", {"n": 2})]


# -- bytes held (issue 23, class 2: 512 KiB requests for services nobody serves held 1 GB) ----

HALF_MIB = b"x" * (512 * 1024)


def test_requests_for_services_nobody_serves_are_bounded_in_bytes_in_all() -> None:
    core = CoordinatorCore(Config(max_held_bytes=2 << 20, max_client_bytes=64 << 20))
    for n in range(12):
        request(core, b"nobody-%d" % n, HALF_MIB, now=0.0, client=b"c%d" % (n % 3))
    out = core.take_outbox()
    refused = [r for c in (b"c0", b"c1", b"c2") for r in replies(out, c)]
    assert len(refused) == 9  # 3 of 512 KiB (and their names) fit in 2 MiB, the 4th not
    assert {mdp.error_reason(r[3:]) for r in refused} == {
        "the coordinator holds its --max-held-mib (2) of requests"
    }
    assert core.held_bytes <= 2 << 20


def test_one_client_is_held_to_its_own_share_and_others_still_get_in() -> None:
    core = CoordinatorCore(Config(max_client_bytes=1 << 20))
    for n in range(4):
        request(core, b"nobody", b"%d" % n, HALF_MIB, now=0.0, client=b"greedy")
    refused = replies(core.take_outbox(), b"greedy")
    assert len(refused) == 3  # one of 512 KiB and a little fits in 1 MiB, a second not
    assert {mdp.error_reason(r[3:]) for r in refused} == {
        "this client has its --max-client-mib (1) of requests waiting or running"
    }
    request(core, b"nobody", b"mine", HALF_MIB, now=0.0, client=b"modest")
    assert replies(core.take_outbox(), b"modest") == []  # queued, not refused


def test_bytes_are_given_back_when_a_task_ends_every_way() -> None:
    core = CoordinatorCore(Config(service_timeout_s=1.0, max_retries=0, heartbeat_s=0.1))
    ready(core, b"w1", b"echo", now=0.0)
    request(core, b"echo", b"done", HALF_MIB, now=0.0, client=b"a")  # ends in a FINAL
    final(core, b"w1", b"a", b"done", now=0.1)
    request(core, b"nobody", b"expires", HALF_MIB, now=0.1, client=b"b")  # ends expired
    core.tick(1.2)
    ready(core, b"w2", b"slow", now=1.2)
    request(core, b"slow", b"dies", HALF_MIB, now=1.2, client=b"c")  # its worker dies
    assert core.held_bytes > 0 and set(core.client_bytes) == {b"c"}
    core.tick(5.0)
    core.tick(10.0)
    core.request_drain(10.0)
    assert core.drained(10.0)
    assert core.held_bytes == 0 and core.client_bytes == {}


def test_the_bytes_of_prefixes_of_no_topic_are_bounded_too() -> None:
    """Long prefixes cost libzmq's trie some 47 bytes a byte: a few of them, not 10,000,
    ask for a fresh events socket."""
    core = CoordinatorCore(Config(max_unknown_prefix_bytes=4000))
    asked = [core.subscription(b"\x01" + b"%04d" % n + b"y" * 996) for n in range(5)]
    assert asked == [False, False, False, False, True]
    core.events_reopened()
    assert not core.subscription(b"\x01" + b"z" * 1000)  # counted afresh


# -- roles and names (issue 23, class 4) ---------------------------------------------------------

WORKER_ONLY, CLIENT_ONLY = frozenset({"worker"}), frozenset({"client"})


def test_a_client_key_cannot_register_as_a_worker_nor_a_worker_key_queue_work() -> None:
    core = CoordinatorCore()
    core.handle(FRONTEND, [b"thief", mdp.WORKER, mdp.W_READY, b"echo"], 0.0,
                key="client-key", roles=CLIENT_ONLY)  # fmt: skip
    assert b"thief" not in core.workers and core.counters["refused.no-worker-role"] == 1
    assert to(b"thief", core.take_outbox()) == [[mdp.WORKER, mdp.W_DISCONNECT]]
    core.handle(FRONTEND, [b"w", mdp.CLIENT, mdp.C_REQUEST, b"echo", b"corr"], 0.0,
                key="worker-key", roles=WORKER_ONLY)  # fmt: skip
    [refused] = replies(core.take_outbox(), b"w")
    assert mdp.error_reason(refused[3:]) == "this key may not send requests"
    assert not core.services.get(b"echo") or not core.services[b"echo"].queue


def test_a_worker_name_stays_with_the_key_that_first_claimed_it() -> None:
    """While worker1 restarts, another key's READY as worker1 used to take its tasks."""
    core = CoordinatorCore()
    core.handle(FRONTEND, [b"worker1", mdp.WORKER, mdp.W_READY, b"echo"], 0.0,
                key="key-1", roles=WORKER_ONLY)  # fmt: skip
    core.handle(FRONTEND, [b"worker1", mdp.WORKER, mdp.W_DISCONNECT], 0.1,
                key="key-1", roles=WORKER_ONLY)  # fmt: skip
    assert b"worker1" not in core.workers  # gone for a restart
    core.handle(FRONTEND, [b"worker1", mdp.WORKER, mdp.W_READY, b"echo"], 0.2,
                key="key-2", roles=WORKER_ONLY)  # fmt: skip
    assert b"worker1" not in core.workers and core.counters["refused.name-taken"] == 1
    core.take_outbox()
    core.handle(FRONTEND, [b"worker1", mdp.WORKER, mdp.W_READY, b"echo"], 0.3,
                key="key-1", roles=WORKER_ONLY)  # fmt: skip
    assert core.workers[b"worker1"].key == "key-1"  # its own key takes it back


def test_a_revoked_worker_is_forgotten_at_once_and_its_task_goes_to_another() -> None:
    core = CoordinatorCore(Config(max_retries=2))
    for name, key in ((b"w1", "key-1"), (b"w2", "key-2")):
        core.handle(FRONTEND, [name, mdp.WORKER, mdp.W_READY, b"echo"], 0.0,
                    key=key, roles=WORKER_ONLY)  # fmt: skip
    request(core, b"echo", b"corr", now=0.1)
    holder = next(w for w in core.workers.values() if w.task is not None)
    other = b"w2" if holder.identity == b"w1" else b"w1"
    core.take_outbox()
    core.keys_changed(lambda key: key != holder.key, now=0.2)  # silent, yet forgotten
    assert holder.identity not in core.workers
    out = core.take_outbox()
    assert [mdp.WORKER, mdp.W_DISCONNECT] in to(holder.identity, out)
    core.tick(5.0)  # past the retry's back-off
    assert tasks_for(other, out + core.take_outbox())
    core.revoked(FRONTEND, [other, mdp.WORKER, mdp.W_HEARTBEAT], now=5.1)
    assert other not in core.workers and core.counters["refused.revoked"] == 1


def test_names_bound_to_keys_are_bounded_and_those_nobody_holds_go_first() -> None:
    """The table of names bound to keys would grow with every name ever sent: at its bound,
    the names of workers gone are forgotten; if every one is held, a new name is refused."""
    core = CoordinatorCore(Config(max_names=3))
    for number in range(3):
        name = b"w%d" % number
        core.handle(FRONTEND, [name, mdp.WORKER, mdp.W_READY, b"echo"], 0.0,
                    key=f"key-{number}", roles=WORKER_ONLY)  # fmt: skip
    core.handle(FRONTEND, [b"w3", mdp.WORKER, mdp.W_READY, b"echo"], 0.1,
                key="key-3", roles=WORKER_ONLY)  # fmt: skip
    assert b"w3" not in core.workers and core.counters["refused.too-many-names"] == 1
    core.handle(FRONTEND, [b"w0", mdp.WORKER, mdp.W_DISCONNECT], 0.2,
                key="key-0", roles=WORKER_ONLY)  # fmt: skip
    core.handle(FRONTEND, [b"w3", mdp.WORKER, mdp.W_READY, b"echo"], 0.3,
                key="key-3", roles=WORKER_ONLY)  # fmt: skip
    assert core.workers[b"w3"].key == "key-3" and set(core.names) == {b"w1", b"w2", b"w3"}
