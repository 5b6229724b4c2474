"""The Docker cluster's network faults as data: what each one runs inside a node, in order.

Each recipe is a list of steps; a step is one command line, run inside the node's container by
`docker/simulate-cluster.sh` (or printed by its `--dry-run`). Keeping them here, apart from any
Docker call, lets them be read, printed and tested without a cluster:

    python -m zcl_lab.faults partition --peer 172.18.0.4   # one step per line
    python -m zcl_lab.faults flaky 20%
    python -m zcl_lab.faults slow 100ms

A partition is two recipes, `partition` (the chain) and `partition-hook` (hooking it in), so
that the fault's start can be timed at the moment it takes effect.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

from zcl import cli
from zcl.errors import CliError
from zcl_lab import slow_link

PARTITION, FLAKY, SLOW = "ZCL-PARTITION", "ZCL-FLAKY", "ZCL-SLOW"
SLOW_PORT = 15001  # the slow-link relay inside a node
SLOW_MARK = f"{slow_link.RELAY_MARK:#x}"  # the relay marks its own connections
# How the relay is started, and the pattern that finds it again (its first letter bracketed,
# so that pkill does not find the shell that runs pkill): both from the module's own name.
RELAY_COMMAND = ("python", "-m", slow_link.__name__)
RELAY_PATTERN = f"'[{slow_link.__name__[0]}]{slow_link.__name__[1:]}'"
Recipe = list[str]


def partition(peers: Sequence[str]) -> Recipe:
    """The chain that cuts a node off from everything but its loopback and `peers` (the nodes
    cut off with it, by address)."""
    steps = [
        f"iptables -N {PARTITION}",
        f"iptables -A {PARTITION} -i lo -j RETURN",
        f"iptables -A {PARTITION} -o lo -j RETURN",
    ]
    for peer in peers:
        steps += [f"iptables -A {PARTITION} -s {peer} -j RETURN"]
        steps += [f"iptables -A {PARTITION} -d {peer} -j RETURN"]
    return [*steps, f"iptables -A {PARTITION} -j DROP"]


def partition_hook() -> Recipe:
    """The moment the partition begins: the chain hooked into both directions."""
    return [f"iptables -I INPUT -j {PARTITION}", f"iptables -I OUTPUT -j {PARTITION}"]


def heal() -> Recipe:
    return [
        f"iptables -D INPUT -j {PARTITION}",
        f"iptables -D OUTPUT -j {PARTITION}",
        f"iptables -F {PARTITION}",
        f"iptables -X {PARTITION}",
    ]


def flaky(loss_percent: int) -> Recipe:
    """Drop that share of the node's packets at random, loopback spared."""
    return [
        f"iptables -N {FLAKY}",
        f"iptables -A {FLAKY} -i lo -j RETURN",
        f"iptables -A {FLAKY} -o lo -j RETURN",
        f"iptables -A {FLAKY} -m statistic --mode random --probability "
        f"0.{loss_percent:02d} -j DROP",
        f"iptables -I INPUT -j {FLAKY}",
        f"iptables -I OUTPUT -j {FLAKY}",
    ]


def unflaky() -> Recipe:
    return [
        f"iptables -D INPUT -j {FLAKY}",
        f"iptables -D OUTPUT -j {FLAKY}",
        f"iptables -F {FLAKY}",
        f"iptables -X {FLAKY}",
    ]


def slow() -> Recipe:
    """Every TCP connection into or out of the node through the delaying relay (started first,
    on SLOW_PORT), except the relay's own (marked) and loopback traffic; open connections are
    reset, so they reconnect through the relay."""
    return [
        f"iptables -t nat -N {SLOW}",
        f"iptables -t nat -A {SLOW} -m mark --mark {SLOW_MARK} -j RETURN",
        f"iptables -t nat -A {SLOW} -d 127.0.0.0/8 -j RETURN",
        f"iptables -t nat -A {SLOW} -p tcp -j REDIRECT --to-ports {SLOW_PORT}",
        f"iptables -t nat -I OUTPUT -j {SLOW}",
        f"iptables -t nat -I PREROUTING -j {SLOW}",
        "ss -K -t state established '( not dst 127.0.0.0/8 )'",
    ]


def unslow() -> Recipe:
    return [
        f"iptables -t nat -D OUTPUT -j {SLOW}",
        f"iptables -t nat -D PREROUTING -j {SLOW}",
        f"iptables -t nat -F {SLOW}",
        f"iptables -t nat -X {SLOW}",
        f"pkill -f {RELAY_PATTERN}",  # its connections close: peers reconnect
    ]


def loss(text: str) -> int:
    """A packet loss between 1% and 99% ("20%" or "20")."""
    found = re.fullmatch(r"([1-9][0-9]?)%?", text)
    if not found:
        raise CliError(f"flaky needs a loss between 1% and 99%, got '{text}'")
    return int(found.group(1))


def delay(text: str) -> str:
    """A delay such as 100ms or 0.5s, as the relay takes it."""
    if not re.fullmatch(r"[0-9]+(ms|s)|[0-9]*\.[0-9]+s", text):
        raise CliError(f"slow needs a delay such as 100ms or 0.5s, got '{text}'")
    return text


RECIPES: dict[str, tuple[str, Callable[[argparse.Namespace], Recipe]]] = {
    "partition": ("the chain that cuts the node off", lambda args: partition(args.peer or [])),
    "partition-hook": ("the chain hooked in: the cut begins", lambda _: partition_hook()),
    "heal": ("the partition undone", lambda _: heal()),
    "flaky": ("random packet loss", lambda args: flaky(loss(args.loss))),
    "unflaky": ("the packet loss undone", lambda _: unflaky()),
    "slow": ("traffic through the delaying relay", lambda args: (delay(args.delay), slow())[1]),
    "unslow": ("the relay undone", lambda _: unslow()),
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "faults")
    verbs = parser.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    for name, (summary, _) in RECIPES.items():
        verb = verbs.add_parser(name, help=summary)
        if name == "partition":
            verb.add_argument("--peer", action="append", help="an address cut off with the node")
        elif name == "flaky":
            verb.add_argument("loss", help="1% to 99%")
        elif name == "slow":
            verb.add_argument("delay", help="e.g. 100ms or 0.5s")
        verb.set_defaults(func=_print_recipe)
    return parser


def _print_recipe(args: argparse.Namespace) -> int:
    print("\n".join(RECIPES[args.recipe][1](args)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
