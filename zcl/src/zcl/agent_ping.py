"""zcl-ping: does a node's agent answer a controller's key? For operators and deployments.

    zcl-ping --keys KEYDIR/controllers/runner node1 tcp://node1:5560
    node1: answered in 1.3 ms (zcl 0.2.0, 0 commands running)

It pings the way the executor does, over CurveZMQ with the node's pinned key, and exits 0 when
the agent answered, 1 with one line saying why when it did not. `--expect-version V` also
wants the agent to run release V (a rolling upgrade waits on it before the next batch).
`--expect-refused` turns that round: exit 0 only when the agent refused the key (a revoked
controller key, after a rotation), 1 when it was served, 2 when the agent could not be
reached at all (no answer proves nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from zcl import cli
from zcl.errors import CliError, ExecutorError
from zcl.keys import load_controller_keys
from zcl.zmq_node_executor import ZmqNodeExecutor

REFUSED = "refused our key"  # what the executor's TransportError says for a refused key
UNREACHABLE = 2


async def ping(
    node: str, endpoint: str, keys_dir: Path, timeout_s: float, version: str | None = None
) -> str:
    """The agent's answer as one line; raises ExecutorError when it gives none, or runs
    another release than `version`."""
    async with ZmqNodeExecutor(node, endpoint, load_controller_keys(keys_dir)) as executor:
        try:
            answer = await asyncio.wait_for(executor.ping(), timeout_s)
        except TimeoutError:
            raise ExecutorError(node, f"no answer from {endpoint} in {timeout_s:g} s") from None
    running, release = answer.get("running", 0), answer.get("version") or "unknown"
    if version is not None and release != version:
        raise ExecutorError(node, f"runs zcl {release}, not {version}")
    took = answer["round_trip_s"] * 1000
    return f"{node}: answered in {took:.1f} ms (zcl {release}, {running} commands running)"


def _cmd_ping(args: argparse.Namespace) -> int:
    if not args.keys.is_dir():
        raise CliError(f"--keys {args.keys}: not a controller key folder")
    try:
        line = asyncio.run(
            ping(args.node, args.endpoint, args.keys, args.timeout, args.expect_version)
        )
    except ExecutorError as exc:
        if args.expect_refused and REFUSED in str(exc):
            print(f"{args.node}: refused this key, as expected")
            return 0
        print(f"zcl-ping: {exc}", file=sys.stderr)
        return UNREACHABLE if args.expect_refused else 1
    if args.expect_refused:
        print(f"zcl-ping: {args.node} served a key it should refuse: {line}", file=sys.stderr)
        return 1
    print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(__doc__, "zcl-ping")
    parser.add_argument("node", help="the node's name, as pinned in the controller's known_hosts")
    parser.add_argument("endpoint", type=cli.endpoint, help="the agent, e.g. tcp://node1:5560")
    parser.add_argument(
        "--keys", type=Path, required=True, help="the controller's key folder (id.key_secret ...)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument(
        "--expect-refused", action="store_true", help="succeed only if the agent refuses the key"
    )
    parser.add_argument(
        "--expect-version", metavar="V", help="succeed only if the agent runs zcl release V"
    )
    parser.set_defaults(func=_cmd_ping)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
