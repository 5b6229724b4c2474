"""`test`, `drill` and `bench`: a workload runs inside the cluster (a container of our image on
its network) while the driver injects faults on a schedule, then the workload's own verdict
decides. Every timing (fault to verdict) is taken in this one process: the fault's moment from
node_faults, the verdict's from the event log the monitor writes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zcl.errors import CliError
from zcl_lab import cluster_bench, cluster_status
from zcl_lab.cluster_driver import deployment, verdicts
from zcl_lab.cluster_driver.engine import Engine, size_of
from zcl_lab.cluster_driver.layout import say
from zcl_lab.cluster_driver.node_faults import NodeFaults
from zcl_tools.results import RollingRestart

QUICK_TRANSPORTS = ["--rounds", "2", "--latency", "20", "--throughput", "100"]


@dataclass
class Workloads:
    engine: Engine
    faults: NodeFaults

    @property
    def events(self) -> Path:
        return self.engine.layout.events

    def clean_nodes(self, verb: str) -> list[str]:
        """2 nodes or more, all running, none with a fault in force."""
        return cluster_status.clean_nodes(cluster_status.cluster(self.engine.layout.project), verb)

    def keys(self) -> str:
        return f"/keys/controllers/{self.engine.layout.controller()}"

    def finish(self, verb: str, container: Any) -> dict[str, Any]:
        """Wait for the workload, show its verdict (its last two lines), fail with it; on
        success, its JSON summary (the line before the verdict)."""
        code = int(container.wait()["StatusCode"])
        tail = container.logs().decode(errors="replace").rstrip("\n").splitlines()[-2:]
        print("\n".join(tail), flush=True)
        self.faults.record(f"{verb}.finished", f"exit {code}")
        if code != 0:
            raise CliError(f"the {verb} workload failed (exit {code}; its verdict is above)")
        try:
            summary: dict[str, Any] = json.loads(tail[0])
        except (IndexError, ValueError):
            raise CliError(f"the {verb} workload printed no summary: {tail}") from None
        return summary

    def test(self, duration: int) -> None:
        nodes = self.clean_nodes("test")
        over = self.events.parent / "faults-over"
        over.unlink(missing_ok=True)
        workload = self.engine.start_in_cluster(
            "workload",
            [
                *("python", "-m", "zcl_lab.cluster_workload"),
                *("--nodes", ",".join(nodes), "--duration", str(duration)),
                *("--keys", self.keys(), "--until-file", "/events/faults-over"),
            ],
        )
        self.faults.record("test.started", " ".join(nodes))
        killed, cut, lossy = nodes[0], nodes[1], nodes[2] if len(nodes) >= 3 else None
        each = duration // 4 + 1
        if lossy:  # a slow and lossy link for the whole run
            self.faults.slow(lossy, "50ms")
            self.faults.flaky(lossy, 20)
        time.sleep(each)  # the schedule: let the load run before the first fault
        offset = size_of(self.events)
        killed_at = self.faults.fail(killed)
        time.sleep(each)
        self.faults.recover(killed)
        cut_at = self.faults.partition([cut])
        time.sleep(each)
        healed_at = self.faults.heal(cut) or time.time()
        if lossy:
            self.faults.fast(lossy)
        # The tasks go on until the healed node has taken one again: the workload's clock
        # started before the faults, which a loaded machine injects late.
        back = verdicts.seconds_until(self.events, "worker.joined", cut, healed_at, offset=offset)
        took = verdicts.seconds_until(self.events, "task.assigned", cut, healed_at, offset=offset)
        over.touch()
        say("faults healed; waiting for the workload to finish")
        self.finish("test", workload)
        dead = verdicts.seconds_until(self.events, "worker.dead", killed, killed_at, offset=offset)
        say(f"{killed} declared dead {dead:.3f} s after it was killed")
        cut_dead = verdicts.seconds_until(self.events, "worker.dead", cut, cut_at, offset=offset)
        say(
            f"{cut} declared dead {cut_dead:.3f} s after it was cut off, back {back:.3f} s after"
            f" healing, took a task again {took:.3f} s after"
        )
        say("PASS")

    def drill(self, duration: int) -> None:
        nodes = self.clean_nodes("drill")
        victim, each = nodes[1], duration // 3 + 1
        drill = self.engine.start_in_cluster(
            "drill",
            [
                *("python", "-m", "zcl_lab.cluster_workload", "--fallback"),
                *("--expect-fallback", victim, "--nodes", ",".join(nodes)),
                *("--duration", str(duration), "--keys", self.keys()),
            ],
        )
        self.faults.record("drill.started", " ".join(nodes))
        time.sleep(each)  # ZeroMQ serves every node first
        self.faults.kill_agent(victim)
        time.sleep(each)  # its circuit opens; SSH serves it
        self.faults.start_agent(victim)
        say("agent back; waiting for the drill to finish (the circuit closes after a probe)")
        self.finish("drill", drill)
        say("PASS")

    def rolling_restart(self, duration: int) -> RollingRestart:
        """Every node's agent restarted in turn (SIGTERM, drain, start) while commands run
        through the fallback executor; PASS only if none failed, none ran twice or never,
        and every journal record arrived once. Returns the figures the bench keeps."""
        nodes = self.clean_nodes("rolling-restart")
        workload = self.engine.start_in_cluster(
            "rolling-restart",
            [
                *("python", "-m", "zcl_lab.cluster_workload", "--fallback", "--strict"),
                *("--nodes", ",".join(nodes), "--duration", str(duration)),
                *("--keys", self.keys(), "--commands", str(max(20, duration * 4))),
            ],
        )
        self.faults.record("rolling-restart.started", " ".join(nodes))
        pause = duration / (len(nodes) + 1)
        restarts = {}
        for node in nodes:
            time.sleep(pause)  # the schedule: load between restarts
            restarts[node] = round(self.faults.restart_agent(node), 3)
        say("every agent restarted; waiting for the workload to finish")
        summary = self.finish("rolling-restart", workload)
        say("PASS")
        commands = summary["commands"]
        return {
            "commands": int(commands["planned"]),
            "failed": int(commands["failed_count"]),
            "ran_twice": int(commands["ran_twice"]),
            "served": dict(commands["served"]),
            "wall_p50_s": float(commands["wall_s"]["p50"]),
            "wall_max_s": float(commands["wall_s"]["max"]),
            "restart_s": restarts,
        }

    def upgrade(self, duration: int, release: str, out: Path | None = None) -> dict[str, Any]:
        """The fleet upgraded to another release and rolled back while commands run through
        the fallback executor (--strict: nothing tried again): PASS only if none failed, none
        ran twice or never, every journal record arrived once and every agent ended on the
        release it started on. Returns the figures: each play's time, the worst stall."""
        nodes = self.clean_nodes("upgrade")
        workload = self.engine.start_in_cluster(
            "upgrade",
            [
                *("python", "-m", "zcl_lab.cluster_workload", "--fallback", "--strict"),
                *("--nodes", ",".join(nodes), "--duration", str(duration)),
                *("--keys", self.keys(), "--commands", str(max(20, duration * 2))),
                *("--runs-dir", "/srv/zcl-runs"),
            ],
        )
        self.faults.record("upgrade.started", " ".join(nodes))
        layout, took, load_began = self.engine.layout, {}, time.monotonic()
        for step, label in (("upgrade", release), ("rollback", "")):
            began = time.monotonic()
            deployment.deploy(layout, release=label, serial="1")
            took[step] = round(time.monotonic() - began, 1)
        plays_s = time.monotonic() - load_began
        say("upgraded and rolled back; waiting for the workload to finish")
        summary = self.finish("upgrade", workload)
        if plays_s > duration:  # else the rollback, or part of it, ran with no load at all
            raise CliError(
                f"the plays took {plays_s:.0f} s, longer than the load's {duration} s: "
                "give a longer --duration"
            )
        commands = summary["commands"]
        figures = {
            "commands": int(commands["planned"]),
            "failed": int(commands["failed_count"]),
            "ran_twice": int(commands["ran_twice"]),
            "never_ran": int(commands["never_ran"]),
            "served": dict(commands["served"]),
            "worst_stall_s": float(commands["wall_s"]["max"]),
            "upgrade_s": took["upgrade"],
            "rollback_s": took["rollback"],
            "load_s": duration,
        }
        print(json.dumps(figures, sort_keys=True), flush=True)
        if out is not None:
            out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
        say("PASS")
        return figures

    def bench(self, quick: bool, out: Path | None) -> None:
        nodes = self.clean_nodes("bench")
        target, victim = nodes[0], nodes[-1]
        build = self.engine.layout.build
        events_dir = self.events.parent
        say(f"SSH vs ZeroMQ, from a runner container to {target}")
        transports = self.engine.start_in_cluster(
            "bench",
            [
                *("python", "-m", "zcl_lab.cluster_bench", "transports"),
                *("--node", target, "--keys", self.keys()),
                *("--out", "/events/bench-transports.json"),
                *(QUICK_TRANSPORTS if quick else []),
            ],
        )
        for chunk in transports.logs(stream=True, follow=True):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        if int(transports.wait()["StatusCode"]) != 0:
            raise CliError("the transport measurement failed (output above)")
        # A dashboard watches the faults; its last frame and `status` while the node is cut
        # off are saved with the figures, as a record of what an operator sees.
        dashboard_log = events_dir / "dashboard.jsonl"
        dashboard_log.unlink(missing_ok=True)
        dashboard = self.engine.start_in_cluster(
            "dashboard",
            [
                *("zcl-monitor", "--keys", "/keys/mdp/controllers/monitor"),
                *("--events", "tcp://coordinator:5556", "--no-metrics"),
                *("--json-log", "/events/dashboard.jsonl"),
            ],
        )
        deadline = time.monotonic() + 30
        while size_of(dashboard_log) == 0:  # its first event: it is subscribed
            if time.monotonic() > deadline:
                raise CliError(
                    f"the dashboard received no event (see: docker logs {dashboard.id[:12]})"
                )
            time.sleep(0.2)  # the file is the only sign from inside the container: poll it
        since = time.time()  # the timeline of faults and verdicts starts here
        detection: list[list[str]] = []
        for kind in ("fail", "pause", "partition"):
            say(f"failure detection: {kind} {victim}")
            detected, rejoined = self._detect(kind, victim, dashboard, build)
            detection.append([kind, victim, f"{detected:.3f}", f"{rejoined:.3f}"])
        say("rolling restart: every agent in turn, under load through the fallback")
        rolling = self.rolling_restart(8 if quick else 12)
        report = cluster_bench.build_report(
            json.loads((events_dir / "bench-transports.json").read_text()),
            detection,
            {
                "status_during_partition": cluster_bench.recorded_text(
                    build / "status-during-partition.txt"
                ),
                "dashboard": cluster_bench.recorded_text(build / "dashboard.txt"),
            },
            cluster_bench.timeline(self.events.read_text().splitlines(), since),
            rolling,
        )
        saved = build / "bench.json"
        cluster_bench.publish(report, saved)
        if out is not None:
            out.write_text(saved.read_text())
            say(f"saved {out}")

    def _detect(self, kind: str, victim: str, dashboard: Any, build: Path) -> tuple[float, float]:
        """Inject the fault, time the coordinator's worker.dead; end it, time worker.joined."""
        offset = size_of(self.events)
        began = {"fail": self.faults.fail, "pause": self.faults.pause}.get(kind)
        at = began(victim) if began else self.faults.partition([victim])
        detected = verdicts.seconds_until(self.events, "worker.dead", victim, at, offset=offset)
        if kind == "partition":
            services = cluster_status.cluster(self.engine.layout.project)
            (build / "status-during-partition.txt").write_text(
                cluster_status.table(services) + "\n"
            )
            dashboard.stop()  # SIGTERM: the monitor prints its last frame
            (build / "dashboard.txt").write_bytes(dashboard.logs(stderr=False))
        offset = size_of(self.events)
        if kind == "fail":
            ended = self.faults.recover(victim)
        elif kind == "pause":
            ended = self.faults.resume(victim)
        else:
            ended = self.faults.heal(victim) or time.time()
        rejoined = verdicts.seconds_until(
            self.events, "worker.joined", victim, ended, offset=offset
        )
        self.engine.wait_healthy(victim)
        return detected, rejoined
