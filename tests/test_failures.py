"""Real processes, real signals: every task completes exactly once through each failure."""

from __future__ import annotations

import signal
import socket

import zmq

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.client import MdpClient
from cluster_patterns.local_cluster import EventLog, run_scenario, start_worker

SLEEP = mdp.get_codec("msgpack").encode({"seconds": 0.05})


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_sigkill_and_sigstop_of_busy_workers_lose_and_duplicate_nothing() -> None:
    # 0.2 s tasks: a worker signalled right after it was given a task is surely still busy
    summary = run_scenario(workers=3, tasks=60, task_s=0.2)
    assert summary.completed == summary.submitted == 60
    assert summary.lost == 0 and summary.duplicates == 0 and summary.errors == 0
    assert summary.retried >= 2  # both failed workers held a task that ran elsewhere
    assert all(seconds is not None for seconds in summary.detection_s.values())
    assert summary.rejoined  # the thawed worker came back on its own


def test_coordinator_restart_workers_reregister_and_clients_get_results() -> None:
    endpoint, events_at = free_endpoint(), free_endpoint()
    coordinator_args = ["--endpoint", endpoint, "--events", events_at, "--insecure"]
    with processes.Roles("cluster_patterns.coordinator") as roles, zmq.Context() as ctx:
        ctx.linger = 0
        first = roles.spawn("coordinator", *coordinator_args)
        for name in ("w1", "w2"):
            start_worker(roles, endpoint, name)
        client = MdpClient(ctx, endpoint, timeout_s=2.0, retries=5)
        batch = processes.RoleThread(client.batch, b"sleep", [[SLEEP]] * 60, 4)
        events = EventLog(ctx, events_at)
        batch.start()
        try:
            assert events.wait_for("task.done", 10) is not None
            first.kill(signal.SIGKILL)
            roles.spawn("coordinator-2", *coordinator_args)
            events.sub.close()
            events = EventLog(ctx, events_at)
            assert events.wait_for("worker.joined", 10, worker="w1") is not None
            assert events.wait_for("worker.joined", 10, worker="w2") is not None
            batch.join(timeout=60)
        finally:
            client.close()
            events.sub.close()
    report = batch.result
    assert len(report.outcomes) == 60 and not report.missing
    assert not [o for o in report.outcomes.values() if o.error]
    assert report.resent > 0  # the requests lost with the first coordinator were sent again
