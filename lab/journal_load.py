"""A journal writer as a process, for tests and demos: numbered records to a collector, with
a line each time another `--report-every` are on disk.

    python -m zcl_lab.journal_load --endpoint tcp://127.0.0.1:5570 --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from zcl import cli
from zcl import keys as keyfiles
from zcl.zmq_journal import ZmqJournalWriter


async def write_many(args: argparse.Namespace) -> None:
    controller = None if args.keys is None else keyfiles.load_controller_keys(args.keys)
    writer = ZmqJournalWriter(args.endpoint, controller, max_unacked=args.window)
    cli.announce_ready("journal-writer", args.endpoint)
    reported = 0
    for n in range(args.count):
        await writer.write({"record_id": f"{args.name}-{n}", "writer": args.name, "n": n})
        if n % args.report_every == 0:  # every record below the oldest unacknowledged is on disk
            oldest = min((int(rid.rsplit(b"-", 1)[1]) for rid in writer.unacked), default=n + 1)
            if oldest - reported >= args.report_every:
                reported = oldest
                print(f"acked {reported}", flush=True)
    await writer.close()
    print(f"done {args.count}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__, "python -m zcl_lab.journal_load")
    parser.add_argument("--endpoint", type=cli.endpoint, required=True)
    parser.add_argument("--keys", type=Path, help="a controller key folder pinning 'collector'")
    parser.add_argument("--name", default="w1")
    parser.add_argument("--count", type=cli.positive_int, default=1000)
    parser.add_argument("--window", type=cli.positive_int, default=1000)
    parser.add_argument("--report-every", type=cli.positive_int, default=1000)
    parser.set_defaults(func=lambda args: asyncio.run(write_many(args)))
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
