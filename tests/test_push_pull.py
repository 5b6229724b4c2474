"""push_pull: fair shares among live workers, and tasks lost with a killed one."""

from __future__ import annotations

from zmq_basics import push_pull


def test_killed_worker_loses_tasks_and_survivors_share_fairly() -> None:
    result = push_pull.demo(workers=3, tasks=150, work_ms=10, kill_after=15)
    assert result.lost > 0, "PUSH must lose what it dealt to a dead worker"
    survivors = [n for name, n in result.per_worker.items() if name != result.killed]
    assert len(survivors) == 2
    assert max(survivors) - min(survivors) <= 1
    assert sum(result.per_worker.values()) + result.lost == result.sent
