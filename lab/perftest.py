"""A simulated perf test, so schedules have something real to run on every node.

It stands in for the GPU/network benchmarks cluster_runner launches: given its role and peers
it takes a while (`--duration`, with `--jitter`), then prints one JSON object with bandwidth,
latency and pass/fail. The figures are derived from the node and its peers, not random, so the
same schedule gives the same results through SSH and through ZeroMQ (only timings differ).
`--fail` makes it fail (exit 1, passed false); `--hang` makes it never finish, for timeouts.

    zcl-perftest --node node3 --role client --peers node7 --duration 0.05
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence


def figures(test: str, node: str, peers: Sequence[str]) -> dict[str, float]:
    """Bandwidth and latency that depend only on who takes part: a stable fake."""
    digest = hashlib.sha256("|".join([test, node, *sorted(peers)]).encode()).digest()
    return {
        "bandwidth_gbps": round(100 + digest[0] * 1.5, 1),
        "latency_us": round(1 + digest[1] / 16, 2),
    }


def run(args: argparse.Namespace) -> int:
    peers = [p for p in args.peers.split(",") if p]
    pause = max(0.0, args.duration + random.uniform(-args.jitter, args.jitter))
    time.sleep(pause)  # the simulated work itself
    if args.hang:
        while True:
            time.sleep(3600)  # a test that never returns; its caller's timeout must end it
    result = {
        "test": args.test,
        "node": args.node,
        "role": args.role,
        "peers": peers,
        **figures(args.test, args.node, peers),
        "passed": not args.fail,
    }
    print(json.dumps(result, sort_keys=True))
    return 1 if args.fail else 0


def main(argv: Sequence[str] | None = None) -> int:
    # Plain argparse: this runs once per test on every node, so it imports nothing heavy.
    parser = argparse.ArgumentParser(
        prog="zcl-perftest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--node", required=True, help="the node this runs on")
    parser.add_argument("--role", choices=["single", "server", "client"], default="single")
    parser.add_argument("--peers", default="", help="comma-separated node ids")
    parser.add_argument("--test", default="simulated", help="the test's name")
    parser.add_argument("--duration", type=float, default=0.05, help="seconds (default 0.05)")
    parser.add_argument("--jitter", type=float, default=0.02, help="seconds either way")
    parser.add_argument("--fail", action="store_true", help="report a failure, exit 1")
    parser.add_argument("--hang", action="store_true", help="never finish")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
