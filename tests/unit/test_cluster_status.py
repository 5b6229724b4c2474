"""`status` without Docker: the table people read, and which nodes a workload may use."""

from __future__ import annotations

import pytest

from zcl.errors import CliError
from zcl_lab.cluster_status import Service, clean_nodes, table

HEALTHY = [
    Service("coordinator", "coordinator", "running", "healthy", ()),
    Service("worker1", "node", "running", "healthy", ()),
    Service("worker2", "node", "running", "healthy", ()),
]


def test_the_table_has_one_aligned_line_per_service_and_its_faults() -> None:
    services = [*HEALTHY, Service("worker3", "node", "running", "healthy", ("flaky", "slow"))]
    assert table(services).splitlines() == [
        "SERVICE      STATE      HEALTH     FAULT",
        "coordinator  running    healthy    -",
        "worker1      running    healthy    -",
        "worker2      running    healthy    -",
        "worker3      running    healthy    flaky,slow",
    ]


def test_a_workload_may_use_the_nodes_only_when_all_run_with_no_fault() -> None:
    assert clean_nodes(HEALTHY, "test") == ["worker1", "worker2"]
    with pytest.raises(CliError, match="test needs a running cluster of 2 nodes or more"):
        clean_nodes(HEALTHY[:2], "test")
    stopped = [*HEALTHY, Service("worker3", "node", "exited", "unhealthy", ("failed",))]
    with pytest.raises(CliError, match="worker3 is not running: recover or resume it first"):
        clean_nodes(stopped, "drill")
    cut = [*HEALTHY, Service("worker3", "node", "running", "healthy", ("partitioned",))]
    with pytest.raises(CliError, match="worker3 has a fault in force: heal or fast it first"):
        clean_nodes(cut, "bench")
