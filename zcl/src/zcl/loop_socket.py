"""A plain ZeroMQ socket driven by an asyncio event loop, with no future per message.

zmq.asyncio wraps every send and receive in a future, which costs more than the message on a
path that carries thousands of small messages a second. Here the loop watches the socket's file
descriptor and a callback gets each message as it arrives; sends are plain non-blocking sends.

The one trap (libzmq's documentation of ZMQ_FD): that descriptor is edge-triggered and signals
"check ZMQ_EVENTS", not "a message is waiting". Any operation on the socket, a send included,
may consume the edge, after which messages can sit unread with the descriptor quiet. So the
reader keeps receiving while ZMQ_EVENTS says POLLIN, and every send schedules one more look.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

import zmq

from zcl.wire import send_now

Message = TypeVar("Message")


class LoopSocket(Generic[Message]):
    """`receive` takes one message off the socket without blocking (recv_now, or recv_now_as
    where the sender's key matters) and `on_message` is called with what it returns."""

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[Message], None],
        receive: Callable[[zmq.Socket[bytes]], Message],
        batch: int = 256,
    ):
        self.sock, self.on_message, self.receive, self.batch = sock, on_message, receive, batch
        self.loop = asyncio.get_running_loop()
        self.fd = sock.FD
        self.look_scheduled = False
        self.closed = False
        self.loop.add_reader(self.fd, self._read)
        self._look_again()  # messages may have arrived before the reader was watching

    def _look_again(self) -> None:
        if not self.look_scheduled and not self.closed:
            self.look_scheduled = True
            self.loop.call_soon(self._read)

    def _read(self) -> None:
        self.look_scheduled = False
        for _ in range(self.batch):  # bounded, so one busy socket cannot starve the loop
            if self.closed or not cast(int, self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return
            self.on_message(self.receive(self.sock))
        self._look_again()  # more may be waiting: come back after the loop's other work

    def read_waiting(self) -> None:
        """Hand on what has already arrived, now rather than at the loop's next turn: for a
        caller about to decide on the socket's news (an agent that said it is stopping)."""
        self._read()

    def send(self, frames: Sequence[bytes]) -> None:
        """Send without blocking (zmq.Again when the peer's queue is full)."""
        try:
            send_now(self.sock, frames)
        finally:
            self._look_again()  # the send may have consumed the descriptor's edge

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            self.sock.close()  # with the socket's own linger (0 unless the owner set more)
