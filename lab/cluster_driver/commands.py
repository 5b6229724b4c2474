"""simulate-cluster.sh's command line: the verbs, their options, one-line errors (exit 1).

python -m zcl_lab.cluster_driver start --workers 4
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from zcl.errors import CliError
from zcl_lab import cluster_status, docker_api, faults
from zcl_lab.cluster_driver import deployment, images, lifecycle
from zcl_lab.cluster_driver.engine import Engine
from zcl_lab.cluster_driver.layout import PROG, Layout
from zcl_lab.cluster_driver.node_faults import NodeFaults
from zcl_lab.cluster_driver.workloads import Workloads

USAGE = """\
simulate-cluster.sh: a Compose cluster of real hosts for steps 02 and 03, built without a
registry, with faults injected the way real clusters fail.

  build                  base image from Debian packages, wheelhouse, project image
  start [--workers N] [--bare]
                         coordinator, monitor and N nodes (default 3), waits until healthy;
                         --bare: nodes and collector host as bare hosts (systemd, sshd, no
                         agent, no collector) for `deploy` to install
  deploy [--check] [--release LABEL] [--serial N]
                         the fleet deployment (integration-plan/deploy, Ansible over SSH) to a
                         bare cluster: core install, keys, systemd units, then a ping per agent,
                         the agents in batches of --serial; --check: what would change;
                         --release: zcl with that local label (0.2.0+LABEL), to upgrade to
                         and roll back from
  rotate                 rotate the controller key across the fleet (add, switch, revoke)
  remove [--purge]       the deployment's removal (state=absent), the daemons' data kept;
                         --purge: nothing of it left on the hosts
  status [--json]        services, health, and the faults in force (--json: for scripts)
  logs [SERVICE]         recent logs of one service or all
  fail NODE / recover NODE    SIGKILL the node's container / start it again
  pause NODE / resume NODE    freeze / thaw every process on the node
  partition NODE [NODE...]    cut these nodes off from the rest (iptables DROP inside them)
  (partition, flaky and slow take --dry-run: print the steps, run nothing)
  heal [NODE]            lift the partition of one node, or of all
  flaky NODE LOSS%       drop that share of the node's packets at random (iptables statistic)
  slow NODE DELAY        add DELAY (e.g. 100ms) to every round trip through the node (a relay,
                         as this kernel may have no netem; resets the node's connections once)
  fast NODE              take the lossy and slow links away again
  test [--duration S]    a workload inside the cluster while nodes are killed, partitioned and
                         lossy; PASS only if every task and every journal record arrived
                         exactly once
  bench [--quick] [--json FILE]
                         SSH vs ZeroMQ between containers, and how long the coordinator takes
                         to notice a node killed, frozen or cut off (docker/.build/bench.json)
  kill-agent NODE / start-agent NODE
                         SIGKILL only the node's ZeroMQ agent (sshd stays) / start it again
  drill [--duration S]   the rollback drill: commands through the fallback executor while one
                         node's agent is killed and restarted; PASS only if that node was served
                         over SSH meanwhile and every record arrived exactly once
  upgrade [--duration S] [--release LABEL] [--json FILE]
                         on a deployed bare cluster: the fleet upgraded to zcl+LABEL (default
                         b) one agent at a time and rolled back, while commands run through
                         the fallback executor; PASS only if none failed or ran twice and
                         every record arrived once; prints each play's time and the worst stall
  rolling-restart [--duration S]
                         every node's agent restarted in turn (SIGTERM, drain, start) while
                         commands run through the fallback executor; PASS only if none failed,
                         none ran twice and every record arrived exactly once
  stop                   stop the cluster (containers stay for `start`)
  cleanup                remove everything this script made: containers, network, images, .build

Every fault's start and end goes, with a timestamp and its target, into the same event log
as the cluster's own events (docker/.build/events/events.jsonl, written by the monitor).
Containers are found by their Compose labels, never by names the driver makes up.
"""

VERBS = (
    *("build", "start", "deploy", "rotate", "remove", "status", "logs", "fail", "recover"),
    *("pause", "resume", "partition", "heal", "flaky", "slow", "fast", "test", "bench"),
    *("kill-agent", "start-agent", "drill", "rolling-restart", "upgrade", "stop", "cleanup"),
)
MISSING_VALUE = {  # an option given without its value
    "--workers": "--workers needs a number",
    "--duration": "--duration needs seconds",
    "--json": "--json needs a file name",
}


class DriverParser(argparse.ArgumentParser):
    """Errors as one line and exit status 1, in the words the script always used."""

    def error(self, message: str) -> NoReturn:
        missing = re.match(r"argument (\S+): expected one argument", message)
        if missing and missing.group(1) in MISSING_VALUE:
            raise CliError(MISSING_VALUE[missing.group(1)])
        choice = re.match(r"argument VERB: invalid choice: '([^']*)'", message)
        if choice:
            raise CliError(f"unknown command '{choice.group(1)}' (commands: {' '.join(VERBS)})")
        raise CliError(re.sub(r"^argument [^:]+: ", "", message))


def usage_of(verb: str) -> str:
    """The usage lines that describe one verb (with its continuation lines)."""
    lines, keep = [], False
    for line in USAGE.splitlines():
        if re.match(r"^  \S", line):  # a synopsis: "fail NODE / recover NODE    what it does"
            synopsis = re.split(r"\s{2,}", line.strip())[0]
            keep = verb in {alternative.split()[0] for alternative in synopsis.split(" / ")}
        elif not line.startswith("    "):
            keep = False
        if keep:
            lines.append(line)
    return "\n".join(lines)


def whole_number(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[1-9][0-9]*", text):
            raise argparse.ArgumentTypeError(what.format(text))
        return int(text)

    return parse


def release_label(text: str) -> str:
    """A local version label (PEP 440): letters and digits, dots between ("": none)."""
    if text and not re.fullmatch(r"[a-z0-9]+(\.[a-z0-9]+)*", text):
        raise argparse.ArgumentTypeError(
            f"--release needs a label of lowercase letters, digits and dots, got {text!r}"
        )
    return text


def build_parser() -> DriverParser:
    parser = DriverParser(
        prog=PROG,
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{PROG} VERB [OPTIONS]",
        add_help=True,
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=DriverParser)

    def verb(name: str) -> DriverParser:
        added: DriverParser = verbs.add_parser(
            name,
            prog=f"{PROG} {name}",
            description=usage_of(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return added

    start = verb("start")
    start.add_argument(
        "--workers", type=whole_number("--workers needs a whole number >= 1, got '{}'"), default=3
    )
    start.add_argument("--bare", action="store_true", help="bare hosts for `deploy`")
    verb("status").add_argument(
        "--json", action="store_true", help="a JSON list, one object a service"
    )
    verb("logs").add_argument("service", nargs="?", metavar="SERVICE")
    for name in ("fail", "recover", "pause", "resume", "fast", "kill-agent", "start-agent"):
        verb(name).add_argument("node", nargs="?", metavar="NODE")
    partition = verb("partition")
    partition.add_argument("nodes", nargs="*", metavar="NODE")
    verb("heal").add_argument("nodes", nargs="*", metavar="NODE")
    flaky = verb("flaky")
    flaky.add_argument("node", nargs="?", metavar="NODE")
    flaky.add_argument("loss", nargs="?", default="", type=faults.loss, metavar="LOSS%")
    slow = verb("slow")
    slow.add_argument("node", nargs="?", metavar="NODE")
    slow.add_argument("delay", nargs="?", default="", type=faults.delay, metavar="DELAY")
    for dry in (partition, flaky, slow):
        dry.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    for name in ("test", "drill", "rolling-restart", "upgrade"):
        verb(name).add_argument(
            "--duration",
            type=whole_number("--duration needs whole seconds, got '{}'"),
            default=240 if name == "upgrade" else 20,
        )
    upgrade = verbs.choices["upgrade"]
    upgrade.add_argument("--release", default="b", metavar="LABEL", type=release_label)
    upgrade.add_argument("--json", type=Path, metavar="FILE", help="also save the figures here")
    bench = verb("bench")
    bench.add_argument("--quick", action="store_true", help="fewer samples")
    bench.add_argument("--json", type=Path, metavar="FILE", help="also save the report here")
    deploy = verb("deploy")
    deploy.add_argument("--check", action="store_true", help="report what would change")
    deploy.add_argument("--release", default="", metavar="LABEL", type=release_label)
    deploy.add_argument("--serial", default="", metavar="N", help="agents per batch (or N%%)")
    verb("remove").add_argument("--purge", action="store_true", help="the daemons' data too")
    for name in ("build", "rotate", "stop", "cleanup", "help"):
        verb(name)
    return parser


def dispatch(args: argparse.Namespace, layout: Layout) -> None:
    verb: str = args.verb
    if verb == "build":
        images.build(layout)
        return
    if verb == "cleanup":
        images.cleanup(layout)
        return
    if verb == "deploy":
        deployment.deploy(layout, check=args.check, release=args.release, serial=args.serial)
        return
    if verb == "remove":
        deployment.remove(layout, purge=args.purge)
        return
    if verb == "rotate":
        deployment.rotate(layout)
        return
    if verb == "status":
        services = cluster_status.cluster(layout.project)
        print(cluster_status.render(services, as_json=args.json))
        return
    engine = Engine(layout)
    try:
        _on_engine(verb, args, engine)
    finally:
        engine.close()  # removes what a verb ran on the cluster's network, also on failure


def _on_engine(verb: str, args: argparse.Namespace, engine: Engine) -> None:
    node_faults = NodeFaults(engine, dry_run=getattr(args, "dry_run", False))
    simple: dict[str, Callable[[Any], object]] = {
        "fail": node_faults.fail,
        "recover": node_faults.recover,
        "pause": node_faults.pause,
        "resume": node_faults.resume,
        "fast": node_faults.fast,
        "kill-agent": node_faults.kill_agent,
        "start-agent": node_faults.start_agent,
    }
    workloads = Workloads(engine, node_faults)
    if verb in simple:
        simple[verb](args.node)
    elif verb == "start":
        lifecycle.start(engine, args.workers, bare=args.bare)
    elif verb == "stop":
        lifecycle.stop(engine)
    elif verb == "logs":
        lifecycle.logs(engine, args.service)
    elif verb == "partition":
        node_faults.partition(args.nodes)
    elif verb == "heal":
        for node in args.nodes or engine.nodes():
            node_faults.heal(node)
    elif verb == "flaky":
        node_faults.flaky(args.node, args.loss)
    elif verb == "slow":
        node_faults.slow(args.node, args.delay)
    elif verb in ("test", "drill", "rolling-restart"):
        timed = {"test": workloads.test, "drill": workloads.drill}
        timed.get(verb, workloads.rolling_restart)(args.duration)
    elif verb == "upgrade":
        workloads.upgrade(args.duration, args.release, args.json)
    elif verb == "bench":
        workloads.bench(args.quick, args.json)


def flags_first(argv: list[str]) -> list[str]:
    """--dry-run moved to just after the verb: it takes no value, so it may stand anywhere,
    and argparse would otherwise split `flaky NODE --dry-run LOSS` between two optional
    positionals and read LOSS as missing."""
    if "--dry-run" not in argv[1:]:
        return argv
    rest = [arg for arg in argv[1:] if arg != "--dry-run"]
    return [argv[0], "--dry-run", *rest]


def _docker_reason(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).splitlines()[0]


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds: what a verb started is removed on the way out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        print(USAGE, end="")
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args, extra = parser.parse_known_args(flags_first(argv))
        if extra:
            raise CliError(f"{args.verb}: unknown option '{extra[0]}' (try {args.verb} --help)")
        if args.verb == "help":
            print(USAGE, end="")
            return 0
        dispatch(args, Layout.from_environment())
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except docker_api.errors().DockerException as exc:  # the Engine said no: one line too
        print(f"{PROG}: error: Docker: {_docker_reason(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
