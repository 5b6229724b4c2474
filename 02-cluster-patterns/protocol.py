"""Majordomo, MDP/0.2 (rfc.zeromq.org spec 18/MDP) and MDP/0.1 (spec 7/MDP), to the frame:
building, parsing, validating.

Every program in step 02 reads and writes MDP messages through this module and nowhere else.

Frames after the ROUTER identity (a leading empty frame, as a REQ socket or a DEALER that
imitates one sends, is accepted on input and echoed back to a peer that used it, so brokers
and peers that delimit their frames this way, such as majortomo, work with ours):

    client -> broker  "MDPC02", REQUEST(1), service, body...
    broker -> client  "MDPC02", PARTIAL(2) | FINAL(3), service, body...
    worker -> broker  "MDPW02", READY(1), service
    broker -> worker  "MDPW02", REQUEST(2), client, "", body...
    worker -> broker  "MDPW02", PARTIAL(3) | FINAL(4), client, "", body...
    either way        "MDPW02", HEARTBEAT(5) | DISCONNECT(6)

MDP/0.1, which the zguide's Majordomo examples speak, is told apart by its headers and read
into the same commands (`Inbound.version` says which was spoken, and replies go back in it):

    client -> broker  "", "MDPC01", service, body...            (no command frame)
    broker -> client  "", "MDPC01", service, body...            (the reply; no PARTIAL)
    worker -> broker  "", "MDPW01", READY(1), service
    broker -> worker  "", "MDPW01", REQUEST(2), client, "", body...
    worker -> broker  "", "MDPW01", REPLY(3), client, "", body...      (read as FINAL)
    either way        "", "MDPW01", HEARTBEAT(4) | DISCONNECT(5)

The codes collide: 0x03 is REPLY in 0.1 and PARTIAL in 0.2, 0x04 HEARTBEAT and FINAL, 0x05
DISCONNECT and HEARTBEAT. So the header decides the table, never the code alone.

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
CLIENT_01 = b"MDPC01"
WORKER_01 = b"MDPW01"

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

# MDP/0.1's worker commands, keyed by the 0.2 command each means (0.1 has no PARTIAL).
W01_CODES = {
    W_READY: b"\x01",
    W_REQUEST: b"\x02",
    W_FINAL: b"\x03",  # REPLY
    W_HEARTBEAT: b"\x04",
    W_DISCONNECT: b"\x05",
}
W01_COMMANDS = {code: ours for ours, code in W01_CODES.items()}

MMI_PREFIX = b"mmi."  # services the broker answers itself (spec 8/MMI)
ERROR_MARK = b"\x00error"  # second body frame of an error reply (our extension)


class ProtocolError(WireError):
    """An MDP message that breaks spec 18; `kind` is a short label for the drop counters."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A valid MDP message as the broker's ROUTER delivered it."""

    sender: bytes  # the peer's routing identity
    delimited: bool  # sent with a leading empty frame (as MDP/0.1 and REQ sockets do)
    header: bytes  # CLIENT or WORKER: an MDP/0.1 peer's header is read into its 0.2 name
    command: bytes  # in 0.2's table, whichever version was spoken
    frames: list[bytes]  # everything after the command frame
    version: int = 2  # the MDP version the peer spoke, 1 or 2: it is answered in the same


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


def _from_mdp01(command: bytes) -> bytes:
    """An MDP/0.1 worker command as the 0.2 command it means."""
    if command not in W01_COMMANDS:
        raise ProtocolError("bad-command", f"unknown MDP/0.1 worker command {command!r}")
    return W01_COMMANDS[command]


def parse_at_broker(frames: Sequence[bytes]) -> Inbound:
    """Validate a message received on the broker's ROUTER; raise ProtocolError to drop it."""
    if len(frames) < 3:
        raise ProtocolError("short", f"{len(frames)} frames")
    delimited, rest = _strip_delimiter(frames[1:])
    if len(rest) < 2:
        raise ProtocolError("short", "no header and command")
    header, command, body = rest[0], rest[1], rest[2:]
    if header == CLIENT_01:  # no command frame: the service comes straight after the header
        if not rest[1]:
            raise ProtocolError("bad-request", "REQUEST needs a service name")
        return Inbound(frames[0], delimited, CLIENT, C_REQUEST, rest[1:], version=1)
    if header == WORKER_01:
        ours = _from_mdp01(command)
        _check_worker_frames(ours, body, towards_broker=True)
        return Inbound(frames[0], delimited, WORKER, ours, body, version=1)
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
    """Validate what a worker's DEALER received from the broker: (command in 0.2's table,
    frames after it), from an MDP/0.2 or an MDP/0.1 broker."""
    _, rest = _strip_delimiter(frames)
    if len(rest) < 2 or rest[0] not in (WORKER, WORKER_01):
        raise ProtocolError("bad-header", "not an MDPW02 or MDPW01 message")
    command, body = rest[1], rest[2:]
    if rest[0] == WORKER_01:
        command = _from_mdp01(command)
    _check_worker_frames(command, body, towards_broker=False)
    return command, body


def parse_at_client(frames: Sequence[bytes]) -> tuple[bytes, bytes, list[bytes]]:
    """Validate what a client's DEALER received: (command, service, body). An MDP/0.1 reply,
    which has no command frame, is a FINAL."""
    _, rest = _strip_delimiter(frames)
    if len(rest) >= 2 and rest[0] == CLIENT_01:
        return C_FINAL, rest[1], rest[2:]
    if len(rest) < 3 or rest[0] != CLIENT or rest[1] not in (C_PARTIAL, C_FINAL):
        raise ProtocolError("bad-reply", "not an MDPC02 PARTIAL or FINAL, nor an MDPC01 reply")
    return rest[1], rest[2], rest[3:]


def to_worker(
    identity: bytes, delimited: bool, command: bytes, *frames: bytes, version: int = 2
) -> list[bytes]:
    """To a worker, in the version it spoke; `command` in 0.2's table. MDP/0.1 always has
    the empty frame first."""
    if version == 1:
        return [identity, b"", WORKER_01, W01_CODES[command], *frames]
    return [identity, *([b""] if delimited else []), WORKER, command, *frames]


def to_client(
    identity: bytes,
    delimited: bool,
    command: bytes,
    service: bytes,
    *frames: bytes,
    version: int = 2,
) -> list[bytes]:
    """To a client, in the version it spoke. MDP/0.1 has only the one reply, with no command
    frame: a PARTIAL has no form there, and is the caller's to leave out."""
    if version == 1:
        if command == C_PARTIAL:
            raise ValueError("MDP/0.1 has no PARTIAL reply")
        return [identity, b"", CLIENT_01, service, *frames]
    return [identity, *([b""] if delimited else []), CLIENT, command, service, *frames]


# How a worker or client frames what it sends: "spec" is MDP/0.2 as written; "delimited" puts
# an empty frame first, which some brokers (majortomo's, for one) require; "0.1" speaks
# MDP/0.1 (RFC 7), for brokers that speak only that, such as the zguide's.
FRAMINGS = ("spec", "delimited", "0.1")


def framing_form(framing: str) -> tuple[bool, int]:
    """(delimited, version) for one of FRAMINGS."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; choose from {', '.join(FRAMINGS)}")
    return framing != "spec", 1 if framing == "0.1" else 2


def from_worker(
    command: bytes, *frames: bytes, delimited: bool = False, version: int = 2
) -> list[bytes]:
    """A worker's message; `command` in 0.2's table (MDP/0.1 has no PARTIAL)."""
    if version == 1:
        return [b"", WORKER_01, W01_CODES[command], *frames]
    return [*([b""] if delimited else []), WORKER, command, *frames]


def from_client(
    service: bytes, *body: bytes, delimited: bool = False, version: int = 2
) -> list[bytes]:
    if version == 1:
        return [b"", CLIENT_01, service, *body]
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
