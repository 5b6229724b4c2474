"""The journal over ZeroMQ, the writer's side: `ZmqJournalWriter`, cluster_runner's
AsyncJournalWriterProtocol for many writers on many hosts and one collector
(journal_collector.py), nothing lost or doubled.

    writer (DEALER) --[VERSION, record_id, json line]--> collector (ROUTER) --> journal.jsonl
                    <--[VERSION, ACK, record_id, ...]--       after fsync

The writer keeps every record until it is acknowledged and sends again whatever has waited
longer than `resend_after_s` (after a collector restart, or a lost connection). `write()` waits
while `max_unacked` records are outstanding, so a writer's memory is bounded and a slow
collector slows its writers down instead of being flooded. `close()` waits for the last
acknowledgements and raises if any record could not be delivered: never a silent loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from zcl import keys as keyfiles
from zcl.errors import JournalError, JournalRecordError, JournalUnavailableError, KeyFileError
from zcl.journal import record_line
from zcl.journal_wire import ACK, REFUSED, VERSION
from zcl.loop_socket import LoopSocket
from zcl.protocols import AsyncJournalWriterProtocol
from zcl.wire import recv_now

log = logging.getLogger("zcl.zmq_journal")  # its module path, also under python -m

# The writer's monitor events that explain a collector that does not acknowledge.
HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the collector refused our key (not in its authorized_keys)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "CurveZMQ handshake failed (wrong pinned collector key?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "CurveZMQ handshake failed (wrong pinned collector key?)",
}
WAIT_S = 30.0  # the longest write(), flush() and close() wait, unless told otherwise


class ZmqJournalWriter:
    """AsyncJournalWriterProtocol over ZeroMQ. Make it anywhere; use it in one event loop.

    Every wait is bounded by `wait_s` (write() with the window full, flush(), close()), after
    which JournalUnavailableError says what the writer has seen of the collector (refused
    our key, cannot connect, silent). Only JournalErrors come out of it."""

    def __init__(
        self,
        endpoint: str,
        keys: keyfiles.ControllerKeys | None,
        *,
        collector_id: str = "collector",
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        max_unacked: int = 1000,
        resend_after_s: float = 1.0,
        wait_s: float = WAIT_S,
    ) -> None:
        server_key = None
        if keys is not None:  # before any socket: one left open would hold the context
            try:
                server_key = keys.agent_key(collector_id)
            except KeyFileError:
                raise JournalError(
                    f"no pinned key for {collector_id!r} in the controller's known_hosts"
                ) from None
        self.endpoint, self.keys, self.server_key = endpoint, keys, server_key
        self.own_ctx = ctx is None
        self.ctx = ctx if ctx is not None else zmq.Context()
        self.max_unacked, self.resend_after_s, self.wait_s = max_unacked, resend_after_s, wait_s
        self.unacked: dict[bytes, tuple[bytes, float]] = {}  # id -> (line, last sent)
        self.acked = 0
        self.refused: dict[bytes, str] = {}  # id -> the collector's reason; never written
        self.problem = "the collector has not acknowledged"  # the latest news of why not
        self.link: LoopSocket[list[bytes]] | None = None
        self.monitor: LoopSocket[list[bytes]] | None = None
        self.resender: asyncio.Task[None] | None = None
        self.room: asyncio.Event | None = None
        self.drained: asyncio.Event | None = None
        self.closed = False

    def _started(self) -> tuple[asyncio.Event, asyncio.Event]:
        """The socket and its tasks, made on first use inside the loop that uses them."""
        if self.room is None or self.drained is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndhwm = self.max_unacked * 2  # room for a full window plus its resend
            if self.keys is not None and self.server_key is not None:
                sock.curve_publickey, sock.curve_secretkey = self.keys.public, self.keys.secret
                sock.curve_serverkey = self.server_key
            events = sum(HANDSHAKE_FAILURES) | zmq.EVENT_CONNECT_RETRIED
            events |= zmq.EVENT_HANDSHAKE_SUCCEEDED
            try:
                monitor = sock.get_monitor_socket(events)
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                sock.close(linger=0)
                raise JournalUnavailableError(f"cannot use {self.endpoint}: {exc}") from None
            self.monitor = LoopSocket(monitor, self._on_event, recv_now)
            self.link = LoopSocket(sock, self._on_ack, recv_now)
            self.resender = asyncio.create_task(self._resend_forever())
            self.room, self.drained = asyncio.Event(), asyncio.Event()
            self.room.set()
            self.drained.set()
        return self.room, self.drained

    async def write(self, record: Mapping[str, Any]) -> None:
        """Returns once the record is queued; `flush()` waits until all are on disk.
        JournalRecordError for a record that can never be written; JournalUnavailableError
        when the window stays full for `wait_s`."""
        if self.closed:
            raise JournalError(
                "the journal writer is closed (an operational context closes the journal it "
                "was given when it exits)"
            )
        record_id, line = record_line(record)  # refused here, before anything is kept
        room, drained = self._started()
        if len(self.unacked) >= self.max_unacked:
            room.clear()
            waiting = f"no room for another record ({len(self.unacked)} not acknowledged)"
            await self._wait(room, self.wait_s, waiting)
        self.unacked[record_id] = (line, time.monotonic())
        drained.clear()
        self._send(record_id, line)

    async def _wait(self, event: asyncio.Event, timeout_s: float | None, what: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            raise JournalUnavailableError(
                f"{what} within {timeout_s:g} s: {self.problem}"
            ) from None

    def _send(self, record_id: bytes, line: bytes) -> None:
        if self.link is None:
            return
        with contextlib.suppress(zmq.Again):  # the queue is full: the resender tries again
            self.link.send([VERSION, record_id, line])

    def _on_event(self, frames: list[bytes]) -> None:
        event = int(parse_monitor_message(frames)["event"])
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.problem = "the collector has not acknowledged (connected; frozen or slow?)"
            return
        if event == zmq.EVENT_CONNECT_RETRIED:
            news = f"cannot connect to {self.endpoint} (collector down or unreachable)"
        else:
            news = HANDSHAKE_FAILURES.get(event, "")
            if news and self.keys is None:
                news = "the collector wants CurveZMQ and this writer has no keys"
        if news and news != self.problem:
            log.warning("journal writer: %s", news)  # once per change, not once per retry
            self.problem = news

    def _on_ack(self, frames: list[bytes]) -> None:
        if len(frames) == 4 and frames[:2] == [VERSION, REFUSED]:
            if self.unacked.pop(frames[2], None) is not None:
                self.refused[frames[2]] = frames[3].decode(errors="replace")
        elif len(frames) >= 2 and frames[:2] == [VERSION, ACK]:
            for record_id in frames[2:]:
                if self.unacked.pop(record_id, None) is not None:
                    self.acked += 1
        else:
            return
        if self.room is not None and len(self.unacked) < self.max_unacked:
            self.room.set()
        if self.drained is not None and not self.unacked:
            self.drained.set()

    async def _resend_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resend_after_s / 2)  # a timer tick, not synchronisation
            stale = time.monotonic() - self.resend_after_s
            for record_id, (line, sent) in list(self.unacked.items()):
                if sent < stale:
                    self.unacked[record_id] = (line, time.monotonic())
                    self._send(record_id, line)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record written so far is on the collector's disk, or refused:
        then raise JournalError naming the refused ones (never a silent loss). The wait is
        `timeout_s`, or the writer's `wait_s`."""
        _, drained = self._started()
        waited = self.wait_s if timeout_s is None else timeout_s
        await self._wait(drained, waited, f"{len(self.unacked)} records not acknowledged")
        if self.refused:
            record_id, reason = next(iter(self.refused.items()))
            raise JournalRecordError(
                f"the collector refused {len(self.refused)} record(s), e.g. "
                f"{record_id.decode(errors='replace')}: {reason}"
            )

    async def close(self, timeout_s: float | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.unacked or self.refused:
                await self.flush(timeout_s)
        finally:
            if self.resender is not None:
                self.resender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.resender
            if self.link is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self.link.sock.disable_monitor()
            for sock in (self.monitor, self.link):
                if sock is not None:
                    sock.close()
            if self.own_ctx:
                self.ctx.destroy(linger=0)


_conforms: type[AsyncJournalWriterProtocol] = ZmqJournalWriter
