"""Step 02's numbers, measured side by side in one run, printed as a table and saved as JSON.

1. Broker cost: our coordinator, majortomo (another published MDP/0.2 broker, from PyPI) and
   a raw ROUTER echo (no broker logic at all), each driven by 4 echo workers and 4 clients
   written from the spec: the broker process's own CPU time per request, read from /proc,
   and end-to-end throughput.
2. Failure detection: a learned worker killed with SIGKILL or frozen with SIGSTOP, time until
   the coordinator publishes worker.dead.
3. False verdicts: idle workers watched while other processes saturate every CPU core.
4. Scale: 1,000 simulated workers beating at 1 Hz (one process drives many sockets), the
   coordinator's CPU share; then 10,000 registering.

python 02-cluster-patterns/benchmark.py --json results/bench-02.json   (make bench)
python 02-cluster-patterns/benchmark.py --quick                        (about a minute)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import zmq

from cluster_patterns import processes
from cluster_patterns import protocol as mdp
from cluster_patterns.local_cluster import (
    EventLog,
    rhythm_learned,
    start_coordinator,
    start_worker,
)
from zcl import cli
from zcl.errors import CliError
from zcl.wire import recv_now, send_now
from zcl_tools import goals
from zcl_tools.results import Bench02, BrokerRun, FalseVerdicts

log = logging.getLogger("benchmark")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ME = "cluster_patterns.benchmark"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- the load: spec-written workers and clients, in the MDP/0.1-compatible framing majortomo needs


def bench_worker(endpoint: str) -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as sock:
        sock.linger = 0
        cli.connect(sock, endpoint)
        sock.send_multipart([b"", mdp.WORKER, mdp.W_READY, b"echo"])
        cli.announce_ready("bench-worker", endpoint)
        last_beat = time.monotonic()
        while True:
            if sock.poll(500):
                frames = sock.recv_multipart()
                if frames[2] == mdp.W_REQUEST:  # "", header, REQUEST, client, "", body...
                    sock.send_multipart([b"", mdp.WORKER, mdp.W_FINAL, *frames[3:]])
            if time.monotonic() - last_beat > 1.0:  # within every broker's liveness window
                sock.send_multipart([b"", mdp.WORKER, mdp.W_HEARTBEAT])
                last_beat = time.monotonic()


def bench_client(endpoint: str, requests: int, window: int, dialect: str) -> None:
    """Keep `window` echo requests in flight; print {"start", "end", "done"} as JSON."""
    request = {
        "raw": [b"", b"payload"],
        "mdp": [b"", mdp.CLIENT, mdp.C_REQUEST, b"echo", b"payload"],
        # majortomo 0.2.0 expects a client REQUEST as 0x02 (the worker command's code), not
        # the spec's 0x01, and answers with 0x04: its own clients agree with it, ours cannot.
        "majortomo": [b"", mdp.CLIENT, b"\x02", b"echo", b"payload"],
    }[dialect]
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as sock:
        sock.linger = 0
        cli.connect(sock, endpoint)
        start, sent, done = time.time(), 0, 0
        while done < requests:
            while sent < requests and sent - done < window:
                sock.send_multipart(request)
                sent += 1
            if not sock.poll(10_000):
                break
            sock.recv_multipart()
            done += 1
        print(json.dumps({"start": start, "end": time.time(), "done": done}), flush=True)


def raw_echo(endpoint: str) -> None:
    """The floor: a ROUTER that sends every message straight back."""
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as sock:
        cli.announce_ready("raw-echo", cli.bind(sock, endpoint))
        while True:
            sock.send_multipart(sock.recv_multipart())


def python_floor(endpoint: str) -> None:
    """The least Python an MDP broker can run per request: no validation, liveness, events or
    retries, just READY -> idle, REQUEST -> an idle worker, FINAL -> the client. What it costs
    is what any pyzmq broker pays before doing anything a cluster needs."""
    idle: deque[bytes] = deque()
    waiting: deque[tuple[bytes, list[bytes]]] = deque()
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as sock:
        cli.announce_ready("python-floor", cli.bind(sock, endpoint))
        while sock.poll():
            while sock.poll(0):
                sender, _, header, command, *rest = recv_now(sock)  # delimited form only
                if header == mdp.CLIENT:
                    waiting.append((sender, rest[1:]))
                elif command == mdp.W_FINAL:
                    send_now(sock, [rest[0], b"", mdp.CLIENT, mdp.C_FINAL, b"echo", *rest[2:]])
                    idle.append(sender)
                elif command == mdp.W_READY:
                    idle.append(sender)
            while idle and waiting:
                client, body = waiting.popleft()
                send_now(sock, [idle.popleft(), b"", mdp.WORKER, mdp.W_REQUEST, client, b"", *body])


def majortomo_broker(endpoint: str) -> None:
    from majortomo.broker import Broker  # noqa: PLC0415 - optional: only the benchmark needs it

    logging.getLogger("majortomo").setLevel(logging.WARNING)  # it logs every message at INFO
    broker: Any = Broker(bind=endpoint)  # untyped library; Any whether installed or not
    cli.announce_ready("majortomo", endpoint)
    broker.run()


DIALECTS = {
    "raw_echo": "raw",
    "python_floor": "mdp",
    "coordinator": "mdp",
    "coordinator+monitor": "mdp",
    "majortomo": "majortomo",
}


def broker_run(kind: str, requests: int, window: int = 16) -> dict[str, Any]:
    """One broker under 4 workers and 4 clients; its CPU per request and the throughput."""
    endpoint = free_endpoint()
    spawn = {
        "coordinator": (
            "cluster_patterns.coordinator",
            ["--endpoint", endpoint, "--events", "tcp://127.0.0.1:*", "--insecure"],
        ),
        "majortomo": (ME, ["majortomo", "--endpoint", endpoint]),
        "raw_echo": (ME, ["raw-echo", "--endpoint", endpoint]),
        "python_floor": (ME, ["python-floor", "--endpoint", endpoint]),
    }[kind]
    with processes.Roles(ME) as roles:
        broker = roles.spawn(kind, *spawn[1], module=spawn[0])
        if kind != "raw_echo":
            for n in range(4):
                roles.spawn(f"worker{n}", "worker", "--endpoint", endpoint)
        cpu_before = cpu_seconds(broker.process.pid)
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    ME,
                    "client",
                    "--endpoint",
                    endpoint,
                    "--requests",
                    str(requests),
                    "--window",
                    str(window),
                    "--dialect",
                    DIALECTS[kind],
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [json.loads(c.communicate(timeout=300)[0]) for c in clients]
        cpu = cpu_seconds(broker.process.pid) - cpu_before
    done = sum(r["done"] for r in results)
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "requests": done,
        "expected": 4 * requests,
        "per_s": done / wall,
        "broker_cpu_us_per_request": cpu / done * 1e6 if done else None,
    }


# -- failure detection and false verdicts ----------------------------------------------------


def with_cluster(
    roles: processes.Roles, ctx: cli.Ctx, workers: int
) -> tuple[EventLog, dict[str, processes.Child], str]:
    _, endpoint, events_at = start_coordinator(roles)
    events = EventLog(ctx, events_at)
    events.wait_for("stats", 5)
    procs = {f"w{n}": start_worker(roles, endpoint, f"w{n}", "echo") for n in range(workers)}
    events.wait_for("stats", 15, when=rhythm_learned(*procs))
    return events, procs, endpoint


def detection(trials: int) -> dict[str, Any]:
    found: dict[str, list[float]] = {"SIGKILL": [], "SIGSTOP": []}
    with processes.Roles(ME) as roles, zmq.Context() as ctx:
        ctx.linger = 0
        events, _, endpoint = with_cluster(roles, ctx, 2)
        for trial in range(trials):
            for sig_name, sig in (("SIGKILL", signal.SIGKILL), ("SIGSTOP", signal.SIGSTOP)):
                name = f"t{trial}{sig_name}"
                child = start_worker(roles, endpoint, name, "echo")
                events.wait_for("stats", 15, when=rhythm_learned(name))
                sent = time.time()
                child.signal(sig)
                dead = events.wait_for("worker.dead", 10, worker=name)
                if dead:
                    found[sig_name].append(dead["ts"] - sent)
                child.kill()
        events.sub.close()
    return {
        kind: {
            "trials": len(v),
            "median_s": statistics.median(v) if v else None,
            "max_s": max(v) if v else None,
        }
        for kind, v in found.items()
    }


def false_verdicts(seconds: float, workers: int = 4) -> FalseVerdicts:
    with processes.Roles(ME) as roles, zmq.Context() as ctx:
        ctx.linger = 0
        events, _, _ = with_cluster(roles, ctx, workers)
        burners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)
        ]
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                events.pump(200)
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        dead = events.count("worker.dead")
        events.sub.close()
    return {
        "seconds": seconds,
        "cores_saturated": len(burners),
        "workers": workers,
        "false_dead": dead,
    }


# -- scale -------------------------------------------------------------------------------------


def simulate(endpoint: str, count: int, interval: float) -> None:
    """Many MDP workers in one process: READY, then a HEARTBEAT from each every interval."""
    with zmq.Context() as ctx:
        ctx.max_sockets = count + 100
        socks = []
        for _ in range(count):
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.rcvhwm = 10  # their incoming heartbeats are never read; keep memory flat
            sock.connect(endpoint)
            socks.append(sock)
        # READY only once every socket exists, so no worker's first beat is late.
        for sock in socks:
            sock.send_multipart(mdp.from_worker(mdp.W_READY, b"sim"))
        cli.announce_ready(f"simulator of {count}", endpoint)
        while True:
            started = time.monotonic()
            for sock in socks:
                sock.send_multipart(mdp.from_worker(mdp.W_HEARTBEAT), zmq.NOBLOCK)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))  # the beat's pace


def scale_run(total: int, interval: float, measure_s: float) -> dict[str, Any]:
    """`total` simulated workers (1,000 per process) beating every `interval` seconds."""
    with processes.Roles(ME) as roles, zmq.Context() as ctx:
        ctx.linger = 0
        coordinator, endpoint, events_at = start_coordinator(roles)
        events = EventLog(ctx, events_at)
        for n in range(0, total, 1000):
            roles.spawn(
                f"sim{n}",
                "simulate",
                "--endpoint",
                endpoint,
                "--interval",
                str(interval),
                "--count",
                str(min(1000, total - n)),
                timeout_s=120,
            )

        def everyone(stats: dict[str, Any]) -> bool:
            return bool(stats["worker_count"] >= total)

        events.wait_for("stats", 120, when=everyone)
        counts = [e["worker_count"] for t, e in events.seen if t == "stats"]
        cpu_before, started = cpu_seconds(coordinator.process.pid), time.monotonic()
        while time.monotonic() - started < measure_s:
            events.pump(200)
        cpu_share = (cpu_seconds(coordinator.process.pid) - cpu_before) / (
            time.monotonic() - started
        )
        dead = events.count("worker.dead")
        events.sub.close()
    return {
        "registered": max(counts, default=0),
        "heartbeat_s": interval,
        "cpu_share_of_one_core": cpu_share,
        "worker_dead_events": dead,
    }


def scale(measure_s: float, big: int) -> dict[str, Any]:
    return {"1000": scale_run(1000, 1.0, measure_s), "10000": scale_run(big, 1.0, measure_s)}


def free_endpoint() -> str:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def run_all(quick: bool) -> Bench02:
    requests = 2000 if quick else 10_000
    brokers: dict[str, BrokerRun] = {}
    for kind in ("raw_echo", "python_floor", "coordinator", "majortomo"):
        print(f"broker load: {kind} ...", flush=True)
        try:
            brokers[kind] = cast(BrokerRun, broker_run(kind, requests // 4))
        except CliError as exc:  # majortomo missing: say so, do not invent a number
            brokers[kind] = {"error": str(exc)}
    ours, raw = brokers["coordinator"], brokers["raw_echo"]
    print("failure detection ...", flush=True)
    found = detection(trials=2 if quick else 5)
    print("false verdicts under CPU saturation ...", flush=True)
    verdicts = false_verdicts(10 if quick else 60)
    print("scale ...", flush=True)
    figures: Bench02 = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "libzmq": zmq.zmq_version(),
            "quick": quick,
        },
        "brokers": brokers,
        "throughput_ratio_coordinator_vs_raw": ours["per_s"] / raw["per_s"],
        "detection": found,
        "false_verdicts": verdicts,
        "scale": scale(measure_s=5 if quick else 15, big=10_000),
        "goals": {},
    }
    theirs = brokers.get("majortomo", {}).get("broker_cpu_us_per_request")
    if theirs:  # without majortomo there is no ratio, and its goal is left unjudged
        floor = brokers["python_floor"]["broker_cpu_us_per_request"]
        figures["cpu_ratio_python_floor_vs_majortomo"] = floor / theirs
        figures["cpu_ratio_coordinator_vs_majortomo"] = ours["broker_cpu_us_per_request"] / theirs
    figures["goals"] = goals.evaluate(goals.BROKER_02, figures)
    return figures


def print_table(f: Bench02) -> None:
    lines = [f"{'broker':20} {'req/s':>9} {'broker CPU us/req':>18}"]
    for kind, b in f["brokers"].items():
        cpu = b.get("broker_cpu_us_per_request")
        lines.append(f"{kind:20} {b.get('per_s', 0):9.0f} {cpu or 0:18.1f}  {b.get('error', '')}")
    ratio = f.get("cpu_ratio_coordinator_vs_majortomo")
    if ratio is not None:
        lines.append(f"coordinator CPU per request / majortomo's: {ratio:.2f}")
        floor = f["cpu_ratio_python_floor_vs_majortomo"]
        lines.append(f"python_floor CPU per request / majortomo's: {floor:.2f}")
    lines.append(
        f"coordinator throughput / raw echo: {f['throughput_ratio_coordinator_vs_raw']:.2f}"
    )
    for kind, d in f["detection"].items():
        lines.append(
            f"detection {kind}: median {d['median_s']:.3f}s, max {d['max_s']:.3f}s "
            f"over {d['trials']}"
        )
    fv = f["false_verdicts"]
    lines.append(
        f"false 'dead' verdicts in {fv['seconds']}s, {fv['cores_saturated']} cores "
        f"saturated: {fv['false_dead']}"
    )
    one, many = f["scale"]["1000"], f["scale"]["10000"]
    lines.append(
        f"1,000 workers at 1 Hz: coordinator at {one['cpu_share_of_one_core']:.1%} of a "
        f"core; 10,000 at 1 Hz: {many['registered']} registered, "
        f"{many['worker_dead_events']} declared dead, coordinator at "
        f"{many['cpu_share_of_one_core']:.0%} of a core"
    )
    lines += goals.describe(f.get("goals", {}))
    print("\n".join(lines))


def cmd_run(args: argparse.Namespace) -> int:
    figures = run_all(args.quick)
    print_table(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"saved {args.json}")
    return 0


DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


def at_endpoint(role: Callable[[str], None]) -> Callable[[argparse.Namespace], None]:
    return lambda args: role(args.endpoint)


def main(argv: Sequence[str] | None = None) -> int:
    parser, roles = cli.command_parser(__doc__)
    run = cli.add_command(roles, "run", cmd_run, "measure everything (the default)")
    run.add_argument("--quick", action="store_true", help="shorter runs, about a minute")
    run.add_argument("--json", type=Path, help="save the figures here")
    for role, run_at, about in (
        ("worker", bench_worker, "an echo worker"),
        ("raw-echo", raw_echo, "the floor: a ROUTER echoing everything"),
        ("python-floor", python_floor, "the least an MDP broker in Python can do"),
        ("majortomo", majortomo_broker, "the other broker"),
    ):
        cli.add_command(roles, role, at_endpoint(run_at), about, endpoint=DEFAULT_ENDPOINT)
    client = cli.add_command(
        roles,
        "client",
        lambda a: bench_client(a.endpoint, a.requests, a.window, a.dialect),
        "an echo client",
        endpoint=DEFAULT_ENDPOINT,
    )
    client.add_argument("--requests", type=cli.positive_int, default=1000)
    client.add_argument("--window", type=cli.positive_int, default=16)
    client.add_argument("--dialect", choices=["mdp", "raw", "majortomo"], default="mdp")
    sim = cli.add_command(
        roles,
        "simulate",
        lambda a: simulate(a.endpoint, a.count, a.interval),
        "many heartbeating workers",
        endpoint=DEFAULT_ENDPOINT,
    )
    sim.add_argument("--count", type=cli.positive_int, default=1000)
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between heartbeats")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")  # `benchmark.py --quick` means `benchmark.py run --quick`
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
