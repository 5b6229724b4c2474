"""Majordomo MDP/0.2 (rfc.zeromq.org spec 18/MDP) to the frame: building, parsing, validating.

Every program in step 02 reads and writes MDP messages through this module and nowhere else.

Frames after the ROUTER identity (a leading empty frame, as a REQ socket or a DEALER that
imitates one sends, is accepted on input and echoed back to a peer that used it, so brokers
and peers that delimit their frames this way, such as majortomo, work with ours; MDP/0.1's
commands, which the zguide's examples speak, are a different table and are not read here):

    client -> broker  "MDPC02", REQUEST(1), service, body...
    broker -> client  "MDPC02", PARTIAL(2) | FINAL(3), service, body...
    worker -> broker  "MDPW02", READY(1), service
    broker -> worker  "MDPW02", REQUEST(2), client, "", body...
    worker -> broker  "MDPW02", PARTIAL(3) | FINAL(4), client, "", body...
    either way        "MDPW02", HEARTBEAT(5) | DISCONNECT(6)

Our extensions keep those frames intact and live in names and bodies:
  * a service may be requested as "echo@w3" (only worker w3) or "echo#gpu" (a worker tagged
    gpu); a worker may announce "echo#gpu,a100" to carry tags;
  * by convention the first body frame is a correlation id that every reply echoes, so a
    client can pipeline; an error reply is FINAL with body [correlation, ERROR_MARK, reason].
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from zcl.errors import WireError

CLIENT = b"MDPC02"
WORKER = b"MDPW02"

# client commands
C_REQUEST, C_PARTIAL, C_FINAL = b"\x01", b"\x02", b"\x03"
# worker commands
W_READY, W_REQUEST, W_PARTIAL, W_FINAL, W_HEARTBEAT, W_DISCONNECT = (
    b"\x01",
    b"\x02",
    b"\x03",
    b"\x04",
    b"\x05",
    b"\x06",
)
WORKER_COMMAND_NAMES = {
    W_READY: "READY",
    W_REQUEST: "REQUEST",
    W_PARTIAL: "PARTIAL",
    W_FINAL: "FINAL",
    W_HEARTBEAT: "HEARTBEAT",
    W_DISCONNECT: "DISCONNECT",
}

MMI_PREFIX = b"mmi."  # services the broker answers itself (spec 8/MMI)
ERROR_MARK = b"\x00error"  # second body frame of an error reply (our extension)


class ProtocolError(WireError):
    """An MDP message that breaks spec 18; `kind` is a short label for the drop counters."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A valid MDP message as the broker's ROUTER delivered it."""

    sender: bytes  # the peer's routing identity
    delimited: bool  # sent in the MDP/0.1 form, with a leading empty frame
    header: bytes
    command: bytes
    frames: list[bytes]  # everything after the command frame


def _strip_delimiter(frames: Sequence[bytes]) -> tuple[bool, list[bytes]]:
    if frames and frames[0] == b"":
        return True, list(frames[1:])
    return False, list(frames)


def _check_worker_frames(command: bytes, frames: list[bytes], towards_broker: bool) -> None:
    replies = (W_PARTIAL, W_FINAL) if towards_broker else (W_REQUEST,)
    if command == W_READY and towards_broker:
        if len(frames) != 1 or not frames[0]:
            raise ProtocolError("bad-ready", "READY carries exactly one non-empty service frame")
    elif command in replies:
        if len(frames) < 2 or not frames[0] or frames[1] != b"":
            raise ProtocolError("bad-envelope", "expected client address, empty frame, body")
    elif command in (W_HEARTBEAT, W_DISCONNECT):
        if frames:
            raise ProtocolError("bad-frames", f"{WORKER_COMMAND_NAMES[command]} carries no frames")
    elif command not in WORKER_COMMAND_NAMES:
        raise ProtocolError("bad-command", f"unknown worker command {command!r}")
    # A known command sent the wrong way (REQUEST to the broker, READY to a worker) is valid
    # but unexpected: the receiver decides, and the spec says to answer it with DISCONNECT.


def parse_at_broker(frames: Sequence[bytes]) -> Inbound:
    """Validate a message received on the broker's ROUTER; raise ProtocolError to drop it."""
    if len(frames) < 3:
        raise ProtocolError("short", f"{len(frames)} frames")
    delimited, rest = _strip_delimiter(frames[1:])
    if len(rest) < 2:
        raise ProtocolError("short", "no header and command")
    header, command, body = rest[0], rest[1], rest[2:]
    if header == CLIENT:
        if command != C_REQUEST:
            raise ProtocolError("bad-command", f"client command {command!r}")
        if not body or not body[0]:
            raise ProtocolError("bad-request", "REQUEST needs a service name")
    elif header == WORKER:
        _check_worker_frames(command, body, towards_broker=True)
    else:
        raise ProtocolError("bad-header", f"header {header[:16]!r}")
    return Inbound(frames[0], delimited, header, command, body)


def parse_at_worker(frames: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """Validate what a worker's DEALER received from the broker: (command, frames after it)."""
    _, rest = _strip_delimiter(frames)
    if len(rest) < 2 or rest[0] != WORKER:
        raise ProtocolError("bad-header", "not an MDPW02 message")
    command, body = rest[1], rest[2:]
    _check_worker_frames(command, body, towards_broker=False)
    return command, body


def parse_at_client(frames: Sequence[bytes]) -> tuple[bytes, bytes, list[bytes]]:
    """Validate what a client's DEALER received: (command, service, body)."""
    _, rest = _strip_delimiter(frames)
    if len(rest) < 3 or rest[0] != CLIENT or rest[1] not in (C_PARTIAL, C_FINAL):
        raise ProtocolError("bad-reply", "not an MDPC02 PARTIAL or FINAL")
    return rest[1], rest[2], rest[3:]


def to_worker(identity: bytes, delimited: bool, command: bytes, *frames: bytes) -> list[bytes]:
    return [identity, *([b""] if delimited else []), WORKER, command, *frames]


def to_client(
    identity: bytes, delimited: bool, command: bytes, service: bytes, *frames: bytes
) -> list[bytes]:
    return [identity, *([b""] if delimited else []), CLIENT, command, service, *frames]


# How a worker or client frames what it sends: "spec" is MDP/0.2 as written; "delimited" puts
# the MDP/0.1-style empty frame first, which some brokers (majortomo's, for one) require.
FRAMINGS = ("spec", "delimited")


def from_worker(command: bytes, *frames: bytes, delimited: bool = False) -> list[bytes]:
    return [*([b""] if delimited else []), WORKER, command, *frames]


def from_client(service: bytes, *body: bytes, delimited: bool = False) -> list[bytes]:
    return [*([b""] if delimited else []), CLIENT, C_REQUEST, service, *body]


def error_body(request_body: Sequence[bytes], reason: str) -> list[bytes]:
    """An error reply that still carries the request's correlation frame."""
    return [request_body[0] if request_body else b"", ERROR_MARK, reason.encode()]


def error_reason(body: Sequence[bytes]) -> str | None:
    """The reason if `body` is an error reply, else None."""
    if len(body) >= 3 and body[1] == ERROR_MARK:
        return body[2].decode(errors="replace")
    return None


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    """What a requested service name asks for: the service, a pinned worker, required tags."""

    service: bytes
    pinned: bytes | None = None
    tags: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=4096)  # a cluster uses few names, and this is on every request
def parse_service_name(name: bytes) -> ServiceRequest:
    """Split "echo@w3" (pin) or "echo#gpu,a100" (tags) into its parts; plain names pass through."""
    if b"@" in name:
        service, _, worker = name.partition(b"@")
        return ServiceRequest(service, pinned=worker or None)
    if b"#" in name:
        service, _, tags = name.partition(b"#")
        return ServiceRequest(
            service, tags=frozenset(t for t in tags.decode(errors="replace").split(",") if t)
        )
    return ServiceRequest(name)


class Codec(Protocol):
    """How our own services encode structured bodies; the broker never looks inside them."""

    name: str

    def encode(self, value: Any) -> bytes: ...
    def decode(self, data: bytes) -> Any: ...


class MsgpackCodec:
    name = "msgpack"

    def encode(self, value: Any) -> bytes:
        return bytes(msgpack.packb(value, use_bin_type=True))

    def decode(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False)


class JsonCodec:
    name = "json"  # slower and larger, but readable in a packet capture

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


CODECS: dict[str, Codec] = {"msgpack": MsgpackCodec(), "json": JsonCodec()}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}") from None
