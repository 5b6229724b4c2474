"""The documents' measured figures, rendered from the JSON files the benchmarks save.

Every figure in the README, the learning notes, the lesson pages and the integration plan sits
in a marked section that names what it shows:

    <!-- figures: transport-03 -->
    (rendered from results/bench-03.json; do not edit by hand)
    <!-- /figures: transport-03 -->

`render` rewrites every marked section from results/; `check` lists the sections that differ
from what their JSON says and exits 1, so a document cannot drift from what was measured
(tests/test_docs.py runs the check). The JSON files come from the benchmark commands:

    results/bench-01.json      python 01-zmq-basics/tour.py --json results/bench-01.json
    results/bench-02.json      python -m cluster_patterns.benchmark --json results/bench-02.json
    results/bench-03.json      python -m cluster_sim.performance_comparison --json ...
    results/bench-docker.json  ./docker/simulate-cluster.sh bench --json ...
    results/bench-fanout.json  python -m zcl_lab.fanout_bench --json ...
    results/bench-fleet-shell.json  python -m zcl_lab.fleet_shell_bench --json ...

    python -m zcl_tools.figures render      (make bench runs it after measuring)
    python -m zcl_tools.figures check
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, overload

from zcl import cli
from zcl.errors import CliError
from zcl_tools import lesson_pictures, pictures
from zcl_tools.goals import GO_NO_GO
from zcl_tools.results import (
    Bench02,
    Bench03,
    BenchDocker,
    BenchFanout,
    BenchFleetShell,
    GoalResult,
    ResultsName,
    method_figure,
)

SECTION = re.compile(
    r"<!-- figures: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /figures: (?P=name) -->", re.S
)


class Results:
    """The saved JSON files, each read once, with a clear error when one is missing. Indexing
    by a file's name gives its TypedDict (zcl_tools.results), so mypy checks every key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loaded: dict[str, Any] = {}

    @overload
    def __getitem__(self, name: Literal["bench-02"]) -> Bench02: ...
    @overload
    def __getitem__(self, name: Literal["bench-03"]) -> Bench03: ...
    @overload
    def __getitem__(self, name: Literal["bench-docker"]) -> BenchDocker: ...
    @overload
    def __getitem__(self, name: Literal["bench-fanout"]) -> BenchFanout: ...
    @overload
    def __getitem__(self, name: Literal["bench-fleet-shell"]) -> BenchFleetShell: ...
    @overload
    def __getitem__(self, name: Literal["bench-01"]) -> dict[str, Any]: ...
    def __getitem__(self, name: ResultsName) -> Any:
        if name not in self.loaded:
            path = self.folder / f"{name}.json"
            try:
                self.loaded[name] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CliError(f"cannot read {path}: {exc}") from None
        return self.loaded[name]


def ms(value: float) -> str:
    return f"{value:.2f} ms"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


# -- step 01 -----------------------------------------------------------------------------------


def lessons_01(r: Results) -> str:
    d = r["bench-01"]
    pipe, pub = d["04_pipeline"], d["05_pub_sub"]
    hwm, styles = d["08_high_water_marks"], d["13_sync_vs_async"]
    seconds = pipe["seconds"]
    speedup = ", ".join(
        f"{n} workers {seconds[n]:.2f} s ({seconds['1'] / seconds[n]:.1f}x)"
        for n in sorted(seconds, key=int)[1:]
    )
    refused = ", ".join(
        f"{kind} {hwm['accepted'][kind]}" for kind in ("PUSH", "DEALER", "ROUTER_MANDATORY")
    )
    dropped = ", ".join(
        f"{kind} accepted {hwm['accepted'][kind]:,} and delivered {hwm['delivered'][kind]:,}"
        for kind in ("PUB", "ROUTER")
    )
    rates = "; ".join(
        f"{style} {styles[style]['per_s']:,.0f} req/s"
        for style in ("blocking REQ", "Poller DEALER", "zmq.asyncio DEALER")
    )
    rows = [
        (
            f"`01-zmq-basics/04_pipeline.py` ({pipe['tasks']} tasks of {pipe['work_ms']} ms)",
            f"medians of {pipe['repeats']}: 1 worker {seconds['1']:.2f} s, {speedup}; "
            "with one of two workers killed "
            f"mid-batch, {pipe['lost_with_killed_worker']} of {pipe['tasks']} tasks never came",
        ),
        (
            "`01-zmq-basics/05_pub_sub.py`",
            f"slow joiner: plain PUB lost {pub['slow_joiner_lost']:,} of {pub['burst']:,}, XPUB "
            f"waiting for the subscription lost {pub['xpub_wait_lost']}",
        ),
        (
            f"`01-zmq-basics/08_high_water_marks.py` ({hwm['transport']}, "
            f"SNDHWM = RCVHWM = {hwm['hwm']})",
            f"accepted before refusing: {refused}; of a flood of {hwm['flood']:,}: {dropped}",
        ),
        (
            f"`01-zmq-basics/13_sync_vs_async.py` ({styles['requests']:,} requests, "
            f"window {styles['window']})",
            rates,
        ),
    ]
    return table(["lesson", "measured"], rows)


# -- step 02 -----------------------------------------------------------------------------------


def broker_02(r: Results) -> str:
    d = r["bench-02"]
    b, detect, scale = d["brokers"], d["detection"], d["scale"]
    cpu = {name: b[name]["broker_cpu_us_per_request"] for name in b}
    g = d["goals"]
    cpu_goal = g["coordinator_cpu_vs_majortomo"]
    met = "met" if cpu_goal["met"] else f"**not met** ({cpu_goal['shown']})"
    rows = [
        (
            "coordinator CPU per request, 4 echo workers and 4 clients",
            f"{cpu['coordinator']:.0f} us (majortomo: {cpu['majortomo']:.0f} us)",
            f"at most half of majortomo's: {met}",
        ),
        (
            "the least any Python MDP broker does, same load (`python_floor`)",
            f"{cpu['python_floor']:.0f} us, "
            f"{d['cpu_ratio_python_floor_vs_majortomo']:.2f} of majortomo's",
            "shows whether the goal is in reach for pyzmq on CPython",
        ),
        (
            "throughput, same load",
            f"{b['coordinator']['per_s']:,.0f} req/s (majortomo {b['majortomo']['per_s']:,.0f}; "
            f"raw ROUTER echo {b['raw_echo']['per_s']:,.0f})",
            f"reported: {d['throughput_ratio_coordinator_vs_raw']:.2f} of raw echo",
        ),
        (
            "failure detection, SIGKILL / SIGSTOP of a worker",
            f"median {detect['SIGKILL']['median_s']:.2f} s / {detect['SIGSTOP']['median_s']:.2f}"
            f" s, max {detect['SIGKILL']['max_s']:.2f} s / {detect['SIGSTOP']['max_s']:.2f} s "
            f"({detect['SIGKILL']['trials']} each)",
            "within 1 s: " + verdict(g["detection_max_s"]["met"]),
        ),
        (
            f'false "dead" verdicts, {d["false_verdicts"]["seconds"]} s with both cores saturated',
            str(d["false_verdicts"]["false_dead"]),
            "0: " + verdict(g["false_dead_saturated"]["met"]),
        ),
        (
            "1,000 simulated workers beating at 1 Hz",
            f"{scale['1000']['cpu_share_of_one_core']:.1%} of one core",
            "under 10%: " + verdict(g["cpu_share_1000_workers"]["met"]),
        ),
        (
            "10,000 simulated workers beating at 1 Hz",
            f"{scale['10000']['registered']:,} registered, "
            f"{scale['10000']['worker_dead_events']} declared dead, "
            f"{scale['10000']['cpu_share_of_one_core']:.0%} of one core",
            "can register: " + verdict(g["registered_10000_workers"]["met"]),
        ),
    ]
    return table(["what", "figure", "goal"], rows)


# -- step 03 -----------------------------------------------------------------------------------


def transport_03(r: Results) -> str:
    d = r["bench-03"]
    rows = []
    for name, lat in d["latency"].items():
        rate = method_figure(d["throughput"], name, "per_s")
        big = method_figure(d["output_1mb"], name, "p50_ms")
        rows.append(
            [
                name,
                ms(lat["p50_ms"]),
                ms(lat["p99_ms"]),
                "-" if rate is None else f"{rate:,.0f}",
                "-" if big is None else f"{big:.1f} ms",
            ]
        )
    run, journal = d["scheduled_run"], d["journal"]
    equal = "yes" if run["journals_equal"] else "NO"
    in_flight = d["throughput"]["in_flight"]
    goals = [[g["what"], g["shown"], g["target"], verdict(g["met"])] for g in d["goals"].values()]
    return "\n".join(
        [
            table(
                [
                    "method",
                    "`true`, p50",
                    "p99",
                    f"commands/s, {in_flight} in flight",
                    "1 MB of output, p50",
                ],
                rows,
            ),
            "",
            f"Scheduled run ({run['nodes']} simulated nodes, all three schedules, "
            f"{run['records']} records): SSH {run['ssh']['wall_s']:.2f} s, ZeroMQ "
            f"{run['zmq']['wall_s']:.2f} s, journals equal: {equal}. Journal, "
            f"{journal['records']:,} records: file {journal['file']['per_s']:,.0f}/s, "
            f"ZeroMQ with fsync and acknowledgements {journal['zmq']['per_s']:,.0f}/s.",
            "",
            table(["goal", "measured", "target", ""], goals),
        ]
    )


# -- the Docker cluster ------------------------------------------------------------------------


def docker_bench(r: Results) -> str:
    d = r["bench-docker"]
    in_flight = d["throughput"]["in_flight"]
    rows = []
    for name, lat in d["latency"].items():
        rate = method_figure(d["throughput"], name, "per_s")
        rows.append(
            [name, ms(lat["p50_ms"]), ms(lat["p99_ms"]), "-" if rate is None else f"{rate:,.0f}"]
        )
    detection = [
        [f"{kind} {times['node']}", f"{times['detected_s']:.2f} s", f"{times['rejoined_s']:.2f} s"]
        for kind, times in d["detection"].items()
    ]
    ratios = d["ratios"]
    return "\n".join(
        [
            f"From a runner container to node `{d['node']}`, `true` each time:",
            "",
            table(["method", "p50", "p99", f"commands/s, {in_flight} in flight"], rows),
            "",
            f"ZeroMQ takes {ratios['zmq_vs_ssh_latency']} of SSH's time per command and runs "
            f"{ratios['zmq_vs_ssh_throughput']} times as many commands per second.",
            "",
            table(
                ["fault on a node", "coordinator declared it dead after", "back after healing"],
                detection,
            ),
            *rolling_restart(d),
        ]
    )


def rolling_restart(d: BenchDocker) -> list[str]:
    """The rolling restart's figures, for a bench that measured one."""
    rolling = d.get("rolling_restart")
    if rolling is None:
        return []
    served = rolling["served"]
    over_ssh = sum(count for how, count in served.items() if how.endswith(" ssh"))
    away = max(rolling["restart_s"].values(), default=0.0)
    return [
        "",
        f"A rolling restart of {len(rolling['restart_s'])} agents under load (SIGTERM, drain, "
        f"start, one after another): {rolling['commands']} commands through the fallback "
        f"executor, {rolling['failed']} failed, {rolling['ran_twice']} ran twice, "
        f"{over_ssh} served over SSH while their node's agent was away (at most {away:.2f} s). "
        f"A call took {rolling['wall_p50_s'] * 1000:.0f} ms (p50) and "
        f"{rolling['wall_max_s'] * 1000:.0f} ms at most: what a restart cost a call made "
        "meanwhile.",
    ]


def fanout_03(r: Results) -> str:
    d = r["bench-fanout"]
    largest = d["sizes"][-1]
    gather_cpu = {
        side: figures["warm"]["cpu_s_per_gather"]
        for side, figures in d["runs"][str(largest)].items()
    }
    rows = []
    for n in d["sizes"]:
        z, s_ = d["runs"][str(n)]["zmq"], d["runs"][str(n)]["ssh"]
        rows.append(
            [
                str(n),
                f"{z['cold']['wall_s']:.3f} s / {s_['cold']['wall_s']:.3f} s",
                f"{z['cold']['cpu_s']:.2f} s / {s_['cold']['cpu_s']:.2f} s",
                f"{z['cold']['peak_rss_mib']:.0f} / {s_['cold']['peak_rss_mib']:.0f} MiB",
                f"{z['warm']['p50_s'] * 1000:.1f} / {s_['warm']['p50_s'] * 1000:.1f} ms",
                f"{z['warm']['p99_s'] * 1000:.1f} / {s_['warm']['p99_s'] * 1000:.1f} ms",
            ]
        )
    growth = [
        f"{side}: {g['cold_s_per_node'] * 1000:.2f} ms cold and "
        f"{g['warm_p50_s_per_node'] * 1000:.3f} ms warm per further node"
        for side, g in (("ZeroMQ", d["growth"]["zmq"]), ("SSH", d["growth"]["ssh"]))
    ]
    limits = [
        f"{side} at about N = {min(lim['n_at_fd_limit'], lim['n_at_memory_limit']):,} "
        f"({lim['bites_first']}; {lim['fds_per_node']:g} open files and "
        f"{lim['rss_mib_per_node']:.2f} MiB per node)"
        for side, lim in (("ZeroMQ", d["limits"]["zmq"]), ("SSH", d["limits"]["ssh"]))
    ]
    at_once = [
        f"{side} "
        + (f"done in {p['cold_s']:.2f} s" if p["completed"] else f"failed: {p['failure']}")
        for side, p in (("ZeroMQ", d["all_at_once"]["zmq"]), ("SSH", d["all_at_once"]["ssh"]))
    ]
    goals = [[g["what"], g["shown"], g["target"], verdict(g["met"])] for g in d["goals"].values()]
    return "\n".join(
        [
            f"`{d['command']}` on every node through `run_group` (at most {d['max_concurrency']} "
            f"at once), ZeroMQ / SSH; warm over {d['warm_rounds']} gathers:",
            "",
            table(
                [
                    "nodes",
                    "cold: every result, connections set up",
                    "controller CPU",
                    "controller peak memory",
                    "warm gather, p50",
                    "p99",
                ],
                rows,
            ),
            "",
            f"At {largest} nodes a warm gather costs the ZeroMQ controller "
            f"{gather_cpu['zmq'] * 1000:.1f} ms of CPU and the SSH one "
            f"{gather_cpu['ssh'] * 1000:.1f} ms ({d['ratios']['warm_zmq_vs_ssh_cpu']:.2f} of it); "
            "the nodes' own work (the agents, sshd and the commands) runs on the same two cores "
            "here, where a fleet spreads it over its nodes.",
            "",
            f"Growth, fitted over {', '.join(map(str, d['sizes']))} nodes: {'; '.join(growth)}. "
            f"All {largest} nodes at once, past `run_group`'s cap: {'; '.join(at_once)} (the "
            f"one sshd here allows MaxStartups {d['sshd_max_startups']}; a fleet's nodes each "
            "see one connection from the controller). "
            f"Where the controller would stop on this machine: {'; '.join(limits)}.",
            "",
            table(["goal", "measured", "target", ""], goals),
        ]
    )


def recording(key: str) -> Callable[[Results], str]:
    def render(r: Results) -> str:
        text = str(r["bench-docker"]["recordings"][key]).rstrip()
        return f"```text\n{text}\n```"

    return render


# -- the integration plan ----------------------------------------------------------------------


def contract_figures(r: Results) -> str:
    """Each contract method with its SSH and ZeroMQ figures side by side."""
    local, docker = r["bench-03"], r["bench-docker"]
    ssh: Final = "ssh_persistent_asyncssh"
    zmq: Final = "zmq"
    run, journal = local["scheduled_run"], local["journal"]
    rows = [
        (
            "`executor.run`, one command, p50 (one machine / container to container)",
            f"{ms(local['latency'][ssh]['p50_ms'])} / {ms(docker['latency'][ssh]['p50_ms'])}",
            f"{ms(local['latency'][zmq]['p50_ms'])} / {ms(docker['latency'][zmq]['p50_ms'])}",
        ),
        (
            "`executor.run`, commands per second with "
            f"{local['throughput']['in_flight']} in flight (same two places)",
            f"{local['throughput'][ssh]['per_s']:,.0f} / {docker['throughput'][ssh]['per_s']:,.0f}",
            f"{local['throughput'][zmq]['per_s']:,.0f} / {docker['throughput'][zmq]['per_s']:,.0f}",
        ),
        (
            "`executor.run`, 1 MB of output, p50",
            f"{local['output_1mb'][ssh]['p50_ms']:.1f} ms",
            f"{local['output_1mb'][zmq]['p50_ms']:.1f} ms",
        ),
        (
            "`executor.run` on a new connection each time, p50 (fresh asyncssh)",
            f"{ms(local['latency']['ssh_fresh_asyncssh']['p50_ms'])} / "
            f"{ms(docker['latency']['ssh_fresh_asyncssh']['p50_ms'])}",
            "- (one connection per node, kept)",
        ),
        (
            f"`journal.write`, records per second ({journal['records']:,} records)",
            f"{journal['file']['per_s']:,.0f} (file journal)",
            f"{journal['zmq']['per_s']:,.0f} (collector: fsync, then ack, per batch)",
        ),
        (
            f"the three schedules on {run['nodes']} nodes through `build_*_context`, wall time",
            f"{run['ssh']['wall_s']:.2f} s",
            f"{run['zmq']['wall_s']:.2f} s (journals equal: "
            f"{'yes' if run['journals_equal'] else 'NO'})",
        ),
    ]
    return table(["contract method", "SSH", "ZeroMQ"], rows)


def criteria(r: Results) -> list[GoalResult]:
    """The migration's go/no-go criteria, as their benchmarks judged them (zcl_tools.goals)."""
    saved = {
        "bench-02": r["bench-02"]["goals"],
        "bench-03": r["bench-03"]["goals"],
        "bench-docker": r["bench-docker"]["goals"],
    }
    return [saved[name][key] for name, key in GO_NO_GO]


def go_no_go(r: Results) -> str:
    rows = [
        [c["what"], c["shown"], c["target"], "go" if c["met"] else "**no go**"] for c in criteria(r)
    ]
    return table(["criterion", "measured", "go when", ""], rows)


# -- the learning notes ------------------------------------------------------------------------


def insights(r: Results) -> str:
    l1, b2, local, docker = r["bench-01"], r["bench-02"], r["bench-03"], r["bench-docker"]
    pub, hwm, pipe = l1["05_pub_sub"], l1["08_high_water_marks"], l1["04_pipeline"]
    refusing = [hwm["accepted"][kind] for kind in ("PUSH", "DEALER", "ROUTER_MANDATORY")]
    exact = "exactly" if set(refusing) == {2 * hwm["hwm"]} else "not exactly"
    ssh: Final = "ssh_persistent_asyncssh"
    zmq: Final = "zmq"
    lat, dlat = local["latency"], docker["latency"]
    zmq_ms, spawn_ms = lat[zmq]["p50_ms"], lat["local_spawn"]["p50_ms"]
    detect = docker["detection"]
    slowest = max(
        [t["detected_s"] for t in detect.values()]
        + [b2["detection"][s]["median_s"] for s in b2["detection"]]
    )
    bullets = [
        f"**High water marks, measured.** Over {hwm['transport']} with SNDHWM = RCVHWM = "
        f"{hwm['hwm']}, PUSH, DEALER and ROUTER_MANDATORY took "
        f"{', '.join(map(str, refusing))} messages before refusing: {exact} the two queues "
        f"together. PUB and ROUTER accepted all {hwm['flood']:,} and delivered "
        f"{hwm['delivered']['PUB']:,} and {hwm['delivered']['ROUTER']:,}: they drop without a "
        "word.",
        f"**The slow joiner.** A PUB that sent {pub['burst']:,} messages right after a "
        f"subscriber connected lost {pub['slow_joiner_lost']:,}; waiting for the subscription "
        f"on an XPUB lost {pub['xpub_wait_lost']}.",
        f"**PUSH cannot see a dead worker.** {pipe['lost_with_killed_worker']} of "
        f"{pipe['tasks']} tasks went down with a killed worker, which is why step 02 "
        "hands out one task per ready worker and keeps it until the result.",
        f"**Failure detection within {slowest:.2f} s.** On one machine the coordinator "
        f"declared a SIGKILLed worker dead after {b2['detection']['SIGKILL']['median_s']:.2f} s "
        f"(median) and a SIGSTOPped one after {b2['detection']['SIGSTOP']['median_s']:.2f} s; "
        f"between containers a killed node after {detect['fail']['detected_s']:.2f} s, a frozen "
        f"one after {detect['pause']['detected_s']:.2f} s and a cut-off one after "
        f"{detect['partition']['detected_s']:.2f} s.",
        f"**ZeroMQ against SSH.** One command took {ms(zmq_ms)} through ZeroMQ against "
        f"{ms(lat[ssh]['p50_ms'])} over a kept SSH connection on one machine "
        f"({zmq_ms / lat[ssh]['p50_ms']:.2f} of its time), and {ms(dlat[zmq]['p50_ms'])} against "
        f"{ms(dlat[ssh]['p50_ms'])} between containers. Spawning the same command locally took "
        f"{ms(spawn_ms)}: "
        + (
            "the agent beats it by keeping shells started ahead of need."
            if zmq_ms < spawn_ms
            else "starting the shell is most of ZeroMQ's time."
        ),
    ]
    return "\n".join(f"- {b}" for b in bullets)


def fleet_shell(r: Results) -> str:
    d = r["bench-fleet-shell"]
    tools = list(d["runs"][str(d["sizes"][0])])

    def cell(n: int, tool: str) -> str:
        run = d["runs"][str(n)][tool]
        if not run["samples_s"]:
            return "failed"
        ratio = d["ratios"][str(n)].get(tool)
        return f"{run['median_s']:.2f} s" + (f" ({ratio:.1f}x)" if ratio else "")

    rows = [[str(n), *(cell(n, tool) for tool in tools)] for n in d["sizes"]]
    goals = [[g["what"], g["shown"], g["target"], verdict(g["met"])] for g in d["goals"].values()]
    versions = ", ".join(f"{tool} {d['versions'].get(tool, '?')}" for tool in tools[1:])
    return "\n".join(
        [
            f"`{d['command']}` on N nodes, fan-out {d['fanout']}, each tool a whole process, "
            f"cold; the median of {d['repeats']} runs, in turns (in brackets: the peer's time "
            "over zcl-run's):",
            "",
            table(["nodes", *tools], rows),
            "",
            f"Peers: {versions}.",
            "",
            table(["goal", "measured", "target", ""], goals),
        ]
    )


RENDERERS: dict[str, Callable[[Results], str]] = {
    "lessons-01": lessons_01,
    "broker-02": broker_02,
    "transport-03": transport_03,
    "docker-bench": docker_bench,
    "fanout-03": fanout_03,
    "fleet-shell": fleet_shell,
    "docker-status": recording("status_during_partition"),
    "docker-dashboard": recording("dashboard"),
    "contract-figures": contract_figures,
    "go-no-go": go_no_go,
    "insights": insights,
}


def render_text(text: str, results: Results) -> str:
    def replace(section: re.Match[str]) -> str:
        name = section["name"]
        if name not in RENDERERS:
            raise CliError(f"unknown figures section {name!r} ({', '.join(RENDERERS)})")
        return f"<!-- figures: {name} -->\n{RENDERERS[name](results)}\n<!-- /figures: {name} -->"

    return SECTION.sub(replace, text)


def stale_sections(document: Path, results: Results) -> list[str]:
    """The names of the document's sections that differ from their rendering."""
    text = document.read_text()
    return [
        m["name"]
        for m, fresh in zip(
            SECTION.finditer(text), SECTION.finditer(render_text(text, results)), strict=True
        )
        if m.group(0) != fresh.group(0)
    ]


def documents(root: Path) -> list[Path]:
    """Every Markdown document of the project (not the virtualenv's or the build's)."""
    found = [*root.glob("*.md"), *root.glob("*/*.md")]
    return sorted(
        p for p in found if not p.relative_to(root).parts[0].startswith((".", "build", "docker"))
    )


def stale_pictures(results: Results) -> dict[Path, bytes]:
    """Each picture whose file differs from what its JSON draws, with the fresh drawing."""
    stale = {}
    for name in pictures.PICTURES:
        path = results.folder / pictures.FOLDER / f"{name}.svg"
        fresh = pictures.draw(name, results)
        if not path.is_file() or path.read_bytes() != fresh:
            stale[path] = fresh
    return stale


def cmd_render(args: argparse.Namespace) -> int:
    results = Results(args.results)
    for document in args.documents or documents(Path.cwd()):
        text = document.read_text()
        fresh = render_text(text, results)
        if fresh != text:
            document.write_text(fresh)
            print(f"rendered {document}")
    if not args.documents:
        for path, drawing in stale_pictures(results).items():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(drawing)
            print(f"drew {path}")
        if lesson_pictures.render(Path.cwd()):
            print(f"drew {lesson_pictures.PAGE}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    results = Results(args.results)
    stale = [
        f"{document}: {name}"
        for document in args.documents or documents(Path.cwd())
        for name in stale_sections(document, results)
    ]
    if not args.documents:
        stale += [f"{path}: the picture" for path in stale_pictures(results)]
        stale += lesson_pictures.stale(Path.cwd())
    for line in stale:
        print(f"differs from its JSON: {line}")
    if stale:
        print("re-render with: python -m zcl_tools.figures render", file=sys.stderr)
    return 1 if stale else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = cli.command_parser(__doc__, "python -m zcl_tools.figures")
    for name, func, what in (
        ("render", cmd_render, "rewrite the marked sections and the pictures from results/"),
        ("check", cmd_check, "exit 1 if a marked section or a picture differs from its JSON"),
    ):
        command = cli.add_command(commands, name, func, what)
        command.add_argument("documents", nargs="*", type=Path, help="default: every *.md")
        command.add_argument("--results", type=Path, default=Path("results"))
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
