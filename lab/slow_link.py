"""A transparent TCP relay that slows one node's links: `simulate-cluster.sh slow NODE DELAY`.

The usual tool, tc's netem qdisc, is not in every kernel (our CI machines lack it), so the
Docker cluster delays traffic in user space instead. Inside the node, iptables' nat table
redirects every TCP connection that enters or leaves the node to this relay; the relay finds
where the connection was going (SO_ORIGINAL_DST), connects there itself, and forwards the bytes
both ways, each chunk held for half of DELAY, so every round trip through the node takes DELAY
longer, as netem on the node's interface would. The relay marks its own connections (SO_MARK)
so the nat rules let them through instead of redirecting them back to it.

Differences from netem worth knowing: only TCP is delayed, and only connections made after the
rules are in place pass through the relay, so `slow` resets the node's open connections once
(ZeroMQ reconnects by itself, SSH sessions must reconnect).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence

from zcl import cli

log = logging.getLogger("slow_link")

SO_ORIGINAL_DST = 80  # from linux/netfilter_ipv4.h; the socket module does not export it
RELAY_MARK = 0x2C1  # the nat rules return early for packets with this mark: the relay's own
CHUNK = 64 * 1024


def original_destination(conn: socket.socket) -> tuple[str, int]:
    """Where a redirected connection was headed before iptables sent it here."""
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)  # a struct sockaddr_in
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


async def connect_marked(address: tuple[str, int], mark: int | None) -> socket.socket:
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if mark is not None:  # setting a mark needs CAP_NET_ADMIN, which the nodes have
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, address)
    except OSError:
        upstream.close()
        raise
    return upstream


async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, hold_s: float) -> None:
    """Copy one direction, delivering each chunk `hold_s` after it arrived, in order."""
    loop = asyncio.get_running_loop()
    # Bounded, so a slow reader on the far side pushes back instead of filling our memory.
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=256)

    async def deliver() -> None:
        while True:
            due, chunk = await held.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                if sink.can_write_eof():
                    sink.write_eof()
                return
            sink.write(chunk)
            await sink.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await source.read(CHUNK):
            await held.put((loop.time() + hold_s, chunk))
        await held.put((loop.time() + hold_s, b""))
        await delivering
    finally:
        delivering.cancel()


class SlowLink:
    """Relays each accepted connection to `destination(conn)`, delaying both directions."""

    def __init__(
        self,
        delay_s: float,
        destination: Callable[[socket.socket], tuple[str, int]] = original_destination,
        mark: int | None = RELAY_MARK,
    ) -> None:
        self.hold_s = delay_s / 2  # half on the way in, half on the way out
        self.destination, self.mark = destination, mark
        self.connections = 0

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("socket")
        try:
            upstream = await connect_marked(self.destination(client), self.mark)
        except OSError as exc:
            log.warning("cannot relay a connection: %s", exc)
            writer.close()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        pumps = [
            asyncio.create_task(pump(reader, up_writer, self.hold_s)),
            asyncio.create_task(pump(up_reader, writer, self.hold_s)),
        ]
        try:
            await asyncio.gather(*pumps)
        except OSError:
            pass  # one side reset: the other is closed below, as a real link failure would
        finally:
            for task in pumps:
                task.cancel()
            for each in (writer, up_writer):
                each.close()


async def serve(port: int, delay_s: float) -> None:
    link = SlowLink(delay_s)
    server = await asyncio.start_server(link.relay, "0.0.0.0", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        cli.announce_ready(f"slow link ({delay_s * 1000:.0f} ms)", f"port {port}")
        await stop.wait()
    log.info("stopped after relaying %d connection(s)", link.connections)


def delay_seconds(text: str) -> float:
    """'100ms', '0.25s' or '250' (milliseconds) as seconds; what `slow NODE DELAY` accepts."""
    number = text.removesuffix("ms") if text.endswith("ms") else text.removesuffix("s")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a delay: {text!r} (try 100ms or 0.1s)") from None
    seconds = value if text.endswith("s") and not text.endswith("ms") else value / 1000
    if not 0 < seconds <= 10:
        raise argparse.ArgumentTypeError(f"a delay must be above 0 and at most 10 s, got {text!r}")
    return seconds


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args.port, args.delay))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.program_parser(__doc__)
    parser.prog = "python -m zcl_lab.slow_link"
    parser.add_argument("--port", type=cli.positive_int, default=15001, help="relay port")
    parser.add_argument("--delay", type=delay_seconds, required=True, help="e.g. 100ms, 0.2s")
    parser.set_defaults(func=run)
    return cli.run_main(parser, argv, cli.DAEMON_LOG_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
