"""An MDP/0.2 client, as a library and from the command line.

* `request()`: one request at a time with the Lazy Pirate retry: wait so long, then replace
  the socket and send again. Use it for `mmi.service` look-ups and one-off calls.
* `batch()`: many requests in flight on one socket. Each body starts with a correlation id
  that every reply carries back; a request unanswered for too long is sent again (the
  coordinator may have been restarted), and a second reply to the same id is counted and
  dropped, so the caller sees exactly one result per request.

python 02-cluster-patterns/client.py --service echo --count 1000 --in-flight 32
python 02-cluster-patterns/client.py --service sleep --args '{"seconds": 0.2}' --count 20
python 02-cluster-patterns/client.py --service mmi.service --payload echo
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq

from cluster_patterns import protocol as mdp
from zcl import cli, curve
from zcl.errors import CliError

log = logging.getLogger("client")


@dataclass
class Outcome:
    body: list[bytes]  # the reply body, correlation frame first
    error: str | None
    latency_s: float
    sends: int


@dataclass
class BatchReport:
    outcomes: dict[bytes, Outcome] = field(default_factory=dict)
    submitted: int = 0
    resent: int = 0
    duplicates: int = 0
    missing: list[bytes] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        latencies = sorted(o.latency_s * 1000 for o in self.outcomes.values())
        pct = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        errors = [o.error for o in self.outcomes.values() if o.error]
        return {
            "submitted": self.submitted,
            "completed": len(self.outcomes),
            "errors": len(errors),
            "missing": len(self.missing),
            "resent": self.resent,
            "duplicates": self.duplicates,
            "per_s": len(self.outcomes) / self.wall_s if self.wall_s else 0.0,
            "p50_ms": pct[49] if pct else None,
            "p99_ms": pct[98] if pct else None,
            "first_errors": sorted(set(errors))[:3],
        }


class MdpClient:
    def __init__(
        self,
        ctx: cli.Ctx,
        endpoint: str,
        timeout_s: float = 5.0,
        retries: int = 3,
        framing: str = "spec",
        *,
        keys: curve.ControllerKeys | None = None,
    ) -> None:
        self.ctx, self.endpoint, self.timeout_s, self.retries = ctx, endpoint, timeout_s, retries
        self.keys = keys  # CurveZMQ, pinning the coordinator's key; None: a plain connection
        self.delimited, self.version = mdp.framing_form(framing)  # see protocol.FRAMINGS
        self.sock = self._open()

    def _open(self) -> cli.Sock:
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        if self.keys is not None:
            curve.connect_curve(sock, self.keys, curve.COORDINATOR)
        cli.connect(sock, self.endpoint)
        return sock

    def close(self) -> None:
        self.sock.close(linger=0)

    def _receive(self, timeout_s: float) -> tuple[bytes, list[bytes]] | None:
        """The next reply as (command, body), or None when nothing came in time."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(remaining * 1000) + 1):
                return None
            try:
                command, _service, body = mdp.parse_at_client(self.sock.recv_multipart())
            except mdp.ProtocolError as exc:
                log.warning("dropped a bad reply: %s", exc)
                continue
            return command, body
        return None

    def request(self, service: bytes, *body: bytes) -> list[bytes]:
        """One request, retried on a fresh socket; returns the FINAL body (PARTIALs skipped)."""
        for attempt in range(1, self.retries + 2):
            self.sock.send_multipart(
                mdp.from_client(service, *body, delimited=self.delimited, version=self.version)
            )
            while (reply := self._receive(self.timeout_s)) is not None:
                if reply[0] == mdp.C_FINAL:
                    return reply[1]
            log.info("no reply within %.1fs (attempt %d): new socket", self.timeout_s, attempt)
            self.close()  # a late reply to the old socket can no longer reach us
            self.sock = self._open()
        raise CliError(f"no reply from {self.endpoint} after {self.retries + 1} attempts")

    def batch(
        self,
        service: bytes,
        bodies: Sequence[list[bytes]],
        in_flight: int = 32,
        on_reply: Callable[[int], None] = lambda done: None,
    ) -> BatchReport:
        """Send every body with `in_flight` outstanding at most; one Outcome per body."""
        report = BatchReport(submitted=len(bodies))
        ids = [b"%d" % n for n in range(len(bodies))]
        frames = {cid: [cid, *body] for cid, body in zip(ids, bodies, strict=True)}
        first_sent: dict[bytes, float] = {}
        pending: dict[bytes, tuple[float, int]] = {}  # id -> (last sent, sends)
        to_send = list(reversed(ids))
        started = time.monotonic()

        def send(cid: bytes, sends: int) -> None:
            request = mdp.from_client(
                service, *frames[cid], delimited=self.delimited, version=self.version
            )
            self.sock.send_multipart(request)
            pending[cid] = (time.monotonic(), sends)
            first_sent.setdefault(cid, time.monotonic())

        while to_send or pending:
            while to_send and len(pending) < in_flight:
                send(to_send.pop(), 1)
            now = time.monotonic()
            for cid, (sent_at, sends) in list(pending.items()):
                if now - sent_at > self.timeout_s:
                    if sends > self.retries:
                        del pending[cid]
                        report.missing.append(cid)
                    else:
                        report.resent += 1
                        send(cid, sends + 1)
            reply = self._receive(min(self.timeout_s, 0.5))
            if reply is None or reply[0] != mdp.C_FINAL or not reply[1]:
                continue
            cid = reply[1][0]
            if cid not in pending:
                report.duplicates += cid in report.outcomes
                continue
            _, sends = pending.pop(cid)
            latency = time.monotonic() - first_sent[cid]
            report.outcomes[cid] = Outcome(reply[1], mdp.error_reason(reply[1]), latency, sends)
            on_reply(len(report.outcomes))
        report.wall_s = time.monotonic() - started
        return report


def build_bodies(args: argparse.Namespace) -> list[list[bytes]]:
    if args.args is None:
        return [[args.payload.encode()] for _ in range(args.count)]
    try:
        value = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise CliError(f"--args is not JSON: {exc}") from None
    encoded = mdp.get_codec(args.codec).encode(value)
    return [[encoded] for _ in range(args.count)]


def progress_line(label: str, total: int, show: bool) -> Callable[[int], None]:
    """Progress on one terminal line, rewritten in place (plain text: no extra dependency)."""

    def update(done: int) -> None:
        if show:
            print(f"\r{label}: {done:,}/{total:,}", end="", file=sys.stderr, flush=True)

    return update


def cmd_run(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        keys = curve.client_keys(args)
        client = MdpClient(
            ctx, args.coordinator, args.timeout, args.retries, args.framing, keys=keys
        )
        try:
            if args.service.startswith("mmi."):
                print(
                    b" ".join(client.request(args.service.encode(), args.payload.encode())).decode()
                )
                return 0
            bodies = build_bodies(args)
            show = args.count >= 100 and sys.stderr.isatty()
            report = client.batch(
                args.service.encode(),
                bodies,
                args.in_flight,
                progress_line(f"{args.service} x {args.count}", args.count, show),
            )
            if show:
                print(file=sys.stderr)  # end the progress line
        finally:
            client.close()
    summary = report.summary()
    print(json.dumps(summary) if args.json else "  ".join(f"{k}={v}" for k, v in summary.items()))
    return 0 if summary["completed"] == args.count and not summary["errors"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__, "zcl-client")
    cli.add_endpoint(parser, "--coordinator", "COORDINATOR_ENDPOINT", "tcp://127.0.0.1:5555")
    parser.add_argument("--service", default="echo", help="e.g. echo, sleep, echo@w1, echo#gpu")
    parser.add_argument("--count", type=cli.positive_int, default=1)
    parser.add_argument("--in-flight", type=cli.positive_int, default=32)
    parser.add_argument("--payload", default="hello", help="body for echo and mmi.service")
    parser.add_argument("--args", help="JSON arguments for sleep/shell, sent with --codec")
    parser.add_argument("--codec", choices=sorted(mdp.CODECS), default="msgpack")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before resending")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--framing",
        choices=mdp.FRAMINGS,
        default="spec",
        help="spec: MDP/0.2 as written; delimited: with an empty frame first, for brokers that "
        "need it (e.g. majortomo); 0.1: MDP/0.1 (RFC 7), for brokers that speak only that",
    )
    curve.add_client_keys(parser)
    parser.set_defaults(func=cmd_run)
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
