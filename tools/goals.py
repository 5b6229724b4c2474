"""Every goal the project measures itself against, in one table: step 02's broker, step 03's
transport, the Docker cluster, and which of them decide the migration's go/no-go.

Each benchmark calls `evaluate()` on what it measured and saves the verdicts in its JSON under
"goals"; the documents render those verdicts (tools/figures.py) and never compare numbers
themselves. `python -m zcl_tools.goals refresh` re-evaluates the saved files after a goal
changes, without measuring again.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from zcl_tools.results import (
    Bench02,
    Bench03,
    BenchDocker,
    BenchFanout,
    BenchFleetShell,
    GoalResult,
    Goals,
)

R = TypeVar("R", Bench02, Bench03, BenchDocker, BenchFanout, BenchFleetShell)
Op = Literal["<=", ">=", "<", ">", "=="]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


def ratio(value: float) -> str:
    return f"{value:.3g}"


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def count(value: float) -> str:
    return f"{value:,.0f}"


def share(value: float) -> str:
    return f"{value:.1%}"


def yes_no(value: float) -> str:
    return "yes" if value else "no"


@dataclass(frozen=True)
class Goal(Generic[R]):
    key: str
    what: str
    measure: Callable[[R], float]
    op: Op
    target: float
    shown: Callable[[float], str] = ratio
    target_shown: str | None = None  # when the plain number would read oddly ("yes")

    def evaluate(self, results: R) -> GoalResult:
        value = float(self.measure(results))
        return {
            "what": self.what,
            "value": round(value, 6),
            "shown": self.shown(value),
            "target": self.target_shown or f"{self.op} {self.shown(self.target)}",
            "met": _COMPARE[self.op](value, self.target),
        }


def _max_detection(d: Bench02) -> float:
    return max(run["max_s"] for run in d["detection"].values())


BROKER_02: tuple[Goal[Bench02], ...] = (
    Goal(
        "coordinator_cpu_vs_majortomo",
        "coordinator CPU per request / majortomo's",
        lambda d: d["cpu_ratio_coordinator_vs_majortomo"],
        "<=",
        0.5,
    ),
    Goal(
        "detection_max_s",
        "slowest detection of a killed or frozen worker",
        _max_detection,
        "<=",
        1.0,
        seconds,
    ),
    Goal(
        "false_dead_saturated",
        'false "dead" verdicts with both cores saturated',
        lambda d: d["false_verdicts"]["false_dead"],
        "==",
        0,
        count,
    ),
    Goal(
        "cpu_share_1000_workers",
        "1,000 workers beating at 1 Hz, share of one core",
        lambda d: d["scale"]["1000"]["cpu_share_of_one_core"],
        "<",
        0.10,
        share,
    ),
    Goal(
        "registered_10000_workers",
        "10,000 workers registered",
        lambda d: d["scale"]["10000"]["registered"],
        "==",
        10_000,
        count,
    ),
)


def _zmq_over_ssh_p50(d: Bench03) -> float:
    return d["latency"]["zmq"]["p50_ms"] / d["latency"]["ssh_persistent_asyncssh"]["p50_ms"]


TRANSPORT_03: tuple[Goal[Bench03], ...] = (
    Goal(
        "zmq_latency_vs_local_spawn",
        "zmq latency vs local spawn",
        lambda d: d["latency"]["zmq"]["p50_ms"] / d["latency"]["local_spawn"]["p50_ms"],
        "<=",
        1.3,
    ),
    Goal(
        "zmq_latency_vs_ssh_persistent",
        "zmq latency vs ssh persistent",
        _zmq_over_ssh_p50,
        "<=",
        1 / 3,
    ),
    Goal(
        "zmq_throughput_vs_ssh_persistent",
        "zmq throughput vs ssh persistent",
        lambda d: (
            d["throughput"]["zmq"]["per_s"] / d["throughput"]["ssh_persistent_asyncssh"]["per_s"]
        ),
        ">=",
        3.0,
    ),
    Goal(
        "zmq_1mb_vs_ssh_persistent",
        "ZeroMQ / SSH time for 1 MB of output",
        lambda d: (
            d["output_1mb"]["zmq"]["p50_ms"] / d["output_1mb"]["ssh_persistent_asyncssh"]["p50_ms"]
        ),
        "<=",
        1.0,
    ),
    Goal(
        "zmq_journal_vs_file_journal",
        "ZeroMQ journal / file journal, records per second",
        lambda d: d["journal"]["zmq"]["per_s"] / d["journal"]["file"]["per_s"],
        ">=",
        0.5,
    ),
    Goal(
        "journals_equal",
        "journals of the same scheduled run equal through both transports",
        lambda d: d["scheduled_run"]["journals_equal"],
        "==",
        1,
        yes_no,
        target_shown="yes",
    ),
)

DOCKER: tuple[Goal[BenchDocker], ...] = (
    Goal(
        "zmq_vs_ssh_latency",
        "ZeroMQ / SSH time per command, between containers",
        lambda d: d["latency"]["zmq"]["p50_ms"] / d["latency"]["ssh_persistent_asyncssh"]["p50_ms"],
        "<=",
        1.0,
    ),
    Goal(
        "zmq_vs_ssh_throughput",
        "ZeroMQ / SSH commands per second, between containers",
        lambda d: (
            d["throughput"]["zmq"]["per_s"] / d["throughput"]["ssh_persistent_asyncssh"]["per_s"]
        ),
        ">=",
        1.0,
    ),
    Goal(
        "slowest_detection_s",
        "slowest detection of a killed, frozen or cut-off node",
        lambda d: max(t["detected_s"] for t in d["detection"].values()),
        "<=",
        2.0,
        seconds,
    ),
    Goal(
        "slowest_rejoin_s",
        "slowest return of a healed node",
        lambda d: max(t["rejoined_s"] for t in d["detection"].values()),
        "<=",
        10.0,
        seconds,
    ),
)


def _per_node_cold_growth(d: BenchFanout) -> float:
    """ZeroMQ's cold fan-out time per node at the largest N over that at the smallest."""
    first, last = d["sizes"][0], d["sizes"][-1]
    per_node = {n: d["runs"][str(n)]["zmq"]["cold"]["wall_s"] / n for n in (first, last)}
    return per_node[last] / per_node[first]


FANOUT: tuple[Goal[BenchFanout], ...] = (
    Goal(
        "cold_fanout_zmq_vs_ssh",
        "cold fan-out to the largest N: ZeroMQ / asyncssh time",
        lambda d: d["ratios"]["cold_zmq_vs_ssh_wall"],
        "<=",
        0.1,
    ),
    Goal(
        "cold_fanout_cpu_zmq_vs_ssh",
        "cold fan-out to the largest N: ZeroMQ / asyncssh controller CPU",
        lambda d: d["ratios"]["cold_zmq_vs_ssh_cpu"],
        "<=",
        0.1,
    ),
    Goal(
        "warm_fanout_zmq_vs_ssh",
        "warm fan-out to the largest N: ZeroMQ / kept asyncssh p50",
        lambda d: d["ratios"]["warm_zmq_vs_ssh_p50"],
        "<=",
        1 / 3,
    ),
    Goal(
        "zmq_cold_per_node_growth",
        "ZeroMQ's cold cost per node, largest N / smallest N (flat within 10%, or falling)",
        _per_node_cold_growth,
        "<=",
        1.1,
    ),
)


def _slowest_peer_over_ours(n: int) -> Callable[[BenchFleetShell], float]:
    """The fastest peer's time over zcl-run's at N nodes: above 1, zcl-run beat every peer."""

    def measure(d: BenchFleetShell) -> float:
        return min(d["ratios"][str(n)].values())

    return measure


FLEET_SHELL: tuple[Goal[BenchFleetShell], ...] = tuple(
    Goal(
        f"zcl_run_fastest_at_{n}",
        f"`true` on {n} nodes: the fastest peer's time / zcl-run's (pdsh, clush, Ansible)",
        _slowest_peer_over_ours(n),
        ">",
        1.0,
    )
    for n in (16, 64, 256)
)

# The migration's go/no-go criteria, in the order the plan lists them: (results file, goal key).
GO_NO_GO: tuple[tuple[str, str], ...] = (
    ("bench-03", "journals_equal"),
    ("bench-docker", "zmq_vs_ssh_latency"),
    ("bench-docker", "zmq_vs_ssh_throughput"),
    ("bench-03", "zmq_1mb_vs_ssh_persistent"),
    ("bench-03", "zmq_journal_vs_file_journal"),
    ("bench-docker", "slowest_detection_s"),
    ("bench-docker", "slowest_rejoin_s"),
    ("bench-02", "false_dead_saturated"),
)


def evaluate(goals: Sequence[Goal[R]], results: R) -> Goals:
    """The verdict on each goal whose figures were measured (a run may leave some out: a
    quick run, or a comparison whose other side is not installed)."""
    verdicts: Goals = {}
    for goal in goals:
        try:
            verdicts[goal.key] = goal.evaluate(results)
        except KeyError:
            continue
    return verdicts


def describe(verdicts: Goals) -> list[str]:
    """One line per goal, for a benchmark's printed report."""
    return [
        f"goal: {v['what']}: {v['shown']} (target {v['target']}) {'met' if v['met'] else 'NOT MET'}"
        for v in verdicts.values()
    ]


GOALS_BY_FILE: dict[str, tuple[Goal[Any], ...]] = {
    "bench-02": BROKER_02,
    "bench-03": TRANSPORT_03,
    "bench-docker": DOCKER,
    "bench-fanout": FANOUT,
    "bench-fleet-shell": FLEET_SHELL,
}


def refresh(folder: Path) -> list[Path]:
    """Re-evaluate the goals saved in each results file (after a goal changed)."""
    changed = []
    for name, goals in GOALS_BY_FILE.items():
        path = folder / f"{name}.json"
        data = json.loads(path.read_text())
        verdicts = evaluate(goals, data)
        if data.get("goals") != verdicts:
            data["goals"] = verdicts
            path.write_text(json.dumps(data, indent=2) + "\n")
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zcl_tools.goals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    again = commands.add_parser("refresh", help="re-evaluate the goals in results/*.json")
    again.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        changed = refresh(args.results)
    except (OSError, ValueError, KeyError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"goals re-evaluated in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
