"""The shapes of results/*.json, shared by the benchmarks that write them and the renderer and
goals that read them: rename a key in one place and mypy names every place that still uses it.

Only the figures that goals and documents read are spelled out; the rest stays open (extra keys
are allowed in the files, and `machine` facts vary by benchmark).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

ResultsName = Literal[
    "bench-01", "bench-02", "bench-03", "bench-docker", "bench-fanout", "bench-fleet-shell"
]


def method_figure(by_method: Mapping[str, Any], method: str, figure: str) -> float | None:
    """A figure of a method that only some tables measure (latency covers more methods than
    throughput), or None where this one was not measured."""
    measured = by_method.get(method)
    return None if not isinstance(measured, dict) else measured.get(figure)


class GoalResult(TypedDict):
    """One goal as evaluated when its benchmark ran (tools/goals.py)."""

    what: str
    value: float
    shown: str  # the value as the documents print it
    target: str  # e.g. "<= 0.5"
    met: bool


Goals = dict[str, GoalResult]


class Percentiles(TypedDict):
    p50_ms: float
    p99_ms: float
    samples: int


class Rate(TypedDict):
    per_s: float


# -- step 02 -----------------------------------------------------------------------------------


class BrokerRun(TypedDict, total=False):
    requests: int
    expected: int
    per_s: float
    broker_cpu_us_per_request: float
    error: str  # instead of the figures, when this broker could not be run (not installed)


class Detection02(TypedDict):
    trials: int
    median_s: float
    max_s: float


class FalseVerdicts(TypedDict):
    seconds: int | float
    cores_saturated: int
    workers: int
    false_dead: int


class ScaleRun(TypedDict):
    registered: int
    heartbeat_s: float
    cpu_share_of_one_core: float
    worker_dead_events: int


class Bench02(TypedDict):
    machine: dict[str, Any]
    brokers: dict[str, BrokerRun]
    cpu_ratio_python_floor_vs_majortomo: NotRequired[float]  # only when majortomo ran
    cpu_ratio_coordinator_vs_majortomo: NotRequired[float]
    throughput_ratio_coordinator_vs_raw: float
    detection: dict[str, Detection02]
    false_verdicts: FalseVerdicts
    scale: dict[str, ScaleRun]
    goals: Goals


# -- step 03 -----------------------------------------------------------------------------------


class Throughput(TypedDict):
    zmq: Rate
    ssh_persistent_asyncssh: Rate
    in_flight: int


class OutputMB(TypedDict):
    zmq: Percentiles
    ssh_persistent_asyncssh: Percentiles


class WallTime(TypedDict):
    wall_s: float


class ScheduledRun(TypedDict):
    nodes: int
    schedules: list[str]
    records: int
    ssh: WallTime
    zmq: WallTime
    journals_equal: bool


class JournalRates(TypedDict):
    file: Rate
    zmq: Rate
    records: int


class Bench03(TypedDict):
    latency: dict[str, Percentiles]
    throughput: Throughput
    output_1mb: OutputMB
    scheduled_run: ScheduledRun
    journal: JournalRates
    machine: dict[str, Any]
    goals: Goals


# -- the Docker cluster ------------------------------------------------------------------------


class DockerRatios(TypedDict):
    zmq_vs_ssh_latency: float
    zmq_vs_ssh_throughput: float


class FaultTimes(TypedDict):
    node: str  # the node the fault was put on (not `node` above, which the transports measured)
    detected_s: float
    rejoined_s: float


class TimelineEvent(TypedDict):
    t: float  # seconds from the first fault
    node: str
    event: str  # fault.start.KIND / fault.end.KIND (ours), worker.dead / .joined / .left


class RollingRestart(TypedDict):
    """Every node's agent restarted in turn (SIGTERM, drain, start) under load."""

    commands: int
    failed: int
    ran_twice: int
    served: dict[str, int]  # "NODE zmq" / "NODE ssh" -> commands
    wall_p50_s: float  # one command's wall time, through the fallback executor
    wall_max_s: float  # the slowest: what a restart cost a call made meanwhile
    restart_s: dict[str, float]  # node -> SIGTERM to listening again


class BenchDocker(TypedDict):
    where: str
    node: str
    latency: dict[str, Percentiles]
    throughput: Throughput
    ratios: DockerRatios
    detection: dict[str, FaultTimes]
    recordings: dict[str, str]
    timeline: NotRequired[list[TimelineEvent]]  # benches before the timeline was recorded
    rolling_restart: NotRequired[RollingRestart]  # benches before it was measured
    goals: Goals


class FanoutCold(TypedDict):
    wall_s: float  # from nothing to every node's result, connections set up on the way
    cpu_s: float  # the controller's CPU seconds for it, every thread's
    peak_rss_mib: float
    rss_growth_mib: float  # the peak above the controller's memory before it began


class FanoutWarm(TypedDict):
    p50_s: float  # one whole gather over open connections
    p99_s: float
    cpu_s_per_gather: float
    gathers: int


class FanoutSide(TypedDict):
    side: str  # zmq or ssh
    nodes: int
    cold: FanoutCold
    warm: FanoutWarm
    fds_per_node: float  # the controller's open files per node, connections open
    cold_runs: NotRequired[int]  # the cold figures are the median of this many


class FanoutGrowth(TypedDict):
    """Fitted slopes over the sizes: what each further node adds."""

    cold_s_per_node: float
    cold_cpu_s_per_node: float
    warm_p50_s_per_node: float
    rss_mib_per_node: float


class FanoutLimits(TypedDict):
    fds_per_node: float
    rss_mib_per_node: float
    nofile: int
    n_at_fd_limit: int
    n_at_memory_limit: int
    bites_first: str


class FanoutRatios(TypedDict):
    cold_zmq_vs_ssh_wall: float
    cold_zmq_vs_ssh_cpu: float
    warm_zmq_vs_ssh_p50: float
    warm_zmq_vs_ssh_cpu: float  # the controller's CPU per gather


class FanoutAllAtOnce(TypedDict):
    """Every node at once at the largest N, past run_group's cap: did the side complete?"""

    completed: bool
    cold_s: float  # 0 when it did not complete
    failure: str  # the first failure, as the controller said it ("" when it completed)


class BenchFanout(TypedDict):
    where: str
    command: str
    max_concurrency: int
    warm_rounds: int
    sizes: list[int]
    runs: dict[str, dict[str, FanoutSide]]  # str(N) -> side -> figures
    growth: dict[str, FanoutGrowth]
    limits: dict[str, FanoutLimits]
    sshd_max_startups: str  # the lab sshd's MaxStartups, which bounds connections set up at once
    all_at_once: dict[str, FanoutAllAtOnce]
    ratios: FanoutRatios
    goals: Goals


class ShellRun(TypedDict):
    """One tool at one N: whole processes, cold."""

    median_s: float  # 0 when no run succeeded
    samples_s: list[float]
    failures: list[str]  # why each run that did not succeed on every node failed


class BenchFleetShell(TypedDict):
    where: str
    command: str
    fanout: int
    repeats: int
    sizes: list[int]
    versions: dict[str, str]
    runs: dict[str, dict[str, ShellRun]]  # str(N) -> tool -> figures
    ratios: dict[str, dict[str, float]]  # str(N) -> peer -> its median / zcl-run's
    goals: Goals
