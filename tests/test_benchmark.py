"""benchmark: each load really completes, so the figures it prints are of work that happened.

Only correctness is asserted here; the timings themselves belong to `make bench`.
"""

from __future__ import annotations

import pytest

from cluster_patterns import benchmark


@pytest.mark.parametrize("kind", ["raw_echo", "python_floor", "coordinator"])
def test_each_broker_load_completes(kind: str) -> None:
    result = benchmark.broker_run(kind, requests=50)
    assert result["requests"] == result["expected"] == 200
    assert result["broker_cpu_us_per_request"] is not None


def test_simulated_workers_register() -> None:
    result = benchmark.scale_run(total=200, interval=1.0, measure_s=1.0)
    assert result["registered"] == 200
    assert result["worker_dead_events"] == 0
