"""The slow-link relay on loopback: it delays, keeps every byte in order, and passes EOF on.

Inside a Docker node the relay learns each connection's destination from iptables
(SO_ORIGINAL_DST) and marks its own connections; here it is given the destination instead, so
the relaying itself runs without root or nat rules. tests/test_simulate_cluster.py runs it for
real inside a node with the nat rules in place.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.helpers import python_module
from zcl_lab.slow_link import SlowLink, delay_seconds


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@asynccontextmanager
async def relayed_echo(delay_s: float) -> AsyncIterator[tuple[int, SlowLink]]:
    """An echo server behind a slow link; yields the link's port."""
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = server.sockets[0].getsockname()[1]
    link = SlowLink(delay_s, destination=lambda _: ("127.0.0.1", echo_port), mark=None)
    relay = await asyncio.start_server(link.relay, "127.0.0.1", 0)
    async with server, relay:
        yield relay.sockets[0].getsockname()[1], link


async def round_trip(port: int, payload: bytes) -> tuple[float, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    writer.write_eof()  # the echo server closes after EOF: the relay must pass it through
    received = await asyncio.wait_for(reader.read(), timeout=10)
    elapsed = time.monotonic() - started
    writer.close()
    return elapsed, received


def test_every_round_trip_takes_at_least_the_delay() -> None:
    async def scenario() -> tuple[float, bytes]:
        async with relayed_echo(0.2) as (port, link):
            result = await round_trip(port, b"ping")
            assert link.connections == 1
            return result

    elapsed, received = asyncio.run(scenario())
    assert received == b"ping"
    assert elapsed >= 0.2  # half the delay each way; without the relay this is microseconds


def test_a_large_transfer_arrives_whole_and_in_order() -> None:
    payload = os.urandom(3 * 1024 * 1024)  # many chunks, each held and delivered in turn

    async def scenario() -> bytes:
        async with relayed_echo(0.02) as (port, _):
            return (await round_trip(port, payload))[1]

    assert asyncio.run(scenario()) == payload


def test_a_destination_that_refuses_closes_the_client_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once the probe closes

    async def scenario() -> bytes:
        link = SlowLink(0.01, destination=lambda _: ("127.0.0.1", closed_port), mark=None)
        relay = await asyncio.start_server(link.relay, "127.0.0.1", 0)
        async with relay:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", relay.sockets[0].getsockname()[1]
            )
            data = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()
            return data

    assert asyncio.run(scenario()) == b""


@pytest.mark.parametrize(
    ("text", "seconds"), [("100ms", 0.1), ("0.25s", 0.25), ("2s", 2.0), ("250", 0.25)]
)
def test_delays_are_read_as_the_script_writes_them(text: str, seconds: float) -> None:
    assert delay_seconds(text) == pytest.approx(seconds)


def test_a_bad_delay_is_one_clear_line() -> None:
    done = python_module("zcl_lab.slow_link", "--delay", "soon")
    assert done.returncode == 2
    assert "not a delay: 'soon'" in done.stderr
    assert "Traceback" not in done.stderr
