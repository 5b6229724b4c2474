"""The node agent's wire protocol: every frame the controller and the agent exchange, in one place.

A controller's DEALER sends, and the agent's ROUTER receives (prefixed with the DEALER's
identity):

    [VERSION, request_id, operation, body]            body: a msgpack map

The agent answers on the same connection, many times for a streaming command:

    [VERSION, request_id, OUT, incarnation, stream, data, receipt]   output as it is produced
    [VERSION, request_id, DONE, incarnation, body, ...]      the result (msgpack map, with its
                                                             receipt); for run, stdout and
                                                             stderr follow as frames
    [VERSION, request_id, ERROR, incarnation, body]          {"code": ..., "reason": ...}
    [VERSION, request_id, PONG, incarnation, body]           answer to a ping

Files travel in pieces: `put {path, size, mode}` opens a transfer (refused at once when the
size is over the agent's limit), `write {transfer, offset, data, last}` adds each piece in order,
and the last one renames the file into place; `put {path, data}` is the one-message form for a
small file, `put {path, kind: "folder"}` makes a folder. `get {path, offset, length}` answers a
piece with the file's size and mode, or, for a folder, its entries.

A run request with `stream` may carry `window` (bytes): the agent then sends at most that much
output the controller has not yet acknowledged with CREDIT, and stops reading the command's
pipes until it does, so a slow reader slows the command instead of growing queues.

Receipts bound what a controller that never reads can make the agent hold (libzmq's queues
count messages, not bytes): each OUT and DONE carries 8 random bytes, which the controller
sends back once it has read the reply, as `read: [receipt, ...]` in any request's body or
alone in a READ. Until then the reply counts against the agent's --max-unread-mib for that
controller's key (agent/reply_ledger.py); past it, results wait and streams pause. A controller that
returns no receipts is served that much and then waits: upgrade controllers before agents.

A draining agent sends `[VERSION, DRAIN_ID, ERROR, incarnation, {code: shutting-down}]` to
each controller it knows, which answers `[VERSION, DRAIN_ID, PING, {ids: []}]` and starts
nothing more on that connection (see DRAIN_ID). A `key-refused` error says `started`: whether
the refused request had begun (a command killed at the revocation) or never ran.

`incarnation` is random per agent start: a controller that sees it change knows the agent
restarted and that the commands it had in flight there are gone. Operation names are looked up
in an explicit allow-list at the agent (node_agent.OPERATIONS), never as method names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack

from zcl.errors import InvalidRequestError, WireError
from zcl.run_options import RunOptions

VERSION = b"ZCA1"  # zmq-cluster-lab agent protocol, version 1

# Operations (controller -> agent).
RUN = b"run"
CANCEL = b"cancel"
PUT = b"put"
GET = b"get"
SYSINFO = b"sysinfo"
PING = b"ping"
CREDIT = b"credit"  # {target, bytes}: that much of a windowed stream's output was consumed
WRITE = b"write"  # {transfer, offset, data, last}: a chunk of a put opened with {path, size}
READ = b"read"  # {read: [receipt, ...]}: replies taken off the socket (unanswered, always allowed)

# Reply kinds (agent -> controller).
OUT = b"out"
DONE = b"done"
ERROR = b"error"
PONG = b"pong"

# The stream frame of OUT: which output a chunk belongs to (the file descriptor's number).
STDOUT = b"1"
STDERR = b"2"

MAX_REQUEST_ID_BYTES = 16
# A controller sends a request up to this size without knowing the agent's limits (a file
# piece of 1 MiB and its envelope); a larger one waits for a ping's `limits` first, so that
# one over the agent's message limit is refused at the controller rather than dropped by libzmq.
UNASKED_REQUEST_BYTES = 1024 * 1024 + 64 * 1024
MAX_RECEIPTS = 4096  # the most receipts one message returns
MAX_PIECE_BYTES = 4 * 1024 * 1024  # the most a get answers in one piece
MAX_PING_IDS = 1024  # the most request ids one ping asks about (its pong names the unknown)
HEARTBEAT_ID = b"hb"  # the request id of a controller's heartbeat pings (its own ids are longer)
# A draining agent tells each controller it knows with an ERROR {code: shutting-down} under this
# id; the controller answers with a PING under the same id, which promises that it will start
# nothing more on this connection. The pipe keeps order, so once every controller has answered,
# no request can still be on its way, and the agent may close without losing one unanswered.
DRAIN_ID = b"drain"


class ErrorCode(StrEnum):
    """The `code` of an ERROR reply: what a controller can act on (ERROR_MEANINGS says what
    each means; zcl/WIRE.md lists them). Failures to parse a request at all are not answered:
    there may be no request to answer; they are dropped and counted under their WireError kind."""

    BAD_FIELD = "bad-field"
    BAD_PATH = "bad-path"
    FORBIDDEN_PATH = "forbidden-path"
    NOT_ALLOWED = "not-allowed"
    TOO_LARGE = "too-large"
    OVER_LIMIT = "over-limit"
    BUSY = "busy"
    DUPLICATE_ID = "duplicate-id"
    UNKNOWN_TRANSFER = "unknown-transfer"
    BAD_PIECE = "bad-piece"
    FILE_ERROR = "file-error"
    SPAWN_FAILED = "spawn-failed"
    SYSINFO_FAILED = "sysinfo-failed"
    KEY_REFUSED = "key-refused"
    SHUTTING_DOWN = "shutting-down"
    INTERNAL_ERROR = "internal-error"

    @classmethod
    def of(cls, kind: str) -> ErrorCode:
        """The code for a WireError raised while handling a request; one of our own that is
        not a code is a fault of ours, answered as such rather than left unanswered."""
        return cls(kind) if kind in cls._value2member_map_ else cls.INTERNAL_ERROR


ERROR_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.BAD_FIELD: (
        "a field of the request is missing, of the wrong type or out of range; nothing was done"
    ),
    ErrorCode.BAD_PATH: "a path that is not absolute, or holds a NUL",
    ErrorCode.FORBIDDEN_PATH: (
        "a path outside the agent's file roots, through a link, or to its own keys"
    ),
    ErrorCode.NOT_ALLOWED: (
        "an operation, or a user to run as, that this agent's configuration does not allow"
    ),
    ErrorCode.TOO_LARGE: "a file over the agent's --max-file-bytes",
    ErrorCode.OVER_LIMIT: "an output cap asked above the agent's --max-output-bytes",
    ErrorCode.BUSY: "the agent runs --max-concurrent operations already; try again",
    ErrorCode.DUPLICATE_ID: "a command with this request id is running on this connection",
    ErrorCode.UNKNOWN_TRANSFER: "a piece for a transfer that finished, failed or expired",
    ErrorCode.BAD_PIECE: "a piece out of order, or past the size the transfer announced",
    ErrorCode.FILE_ERROR: "the file system refused the operation (the reason gives the error)",
    ErrorCode.SPAWN_FAILED: "the command's shell could not be started; it did not run",
    ErrorCode.SYSINFO_FAILED: "the system probe did not give its answer",
    ErrorCode.KEY_REFUSED: (
        "the controller's key was revoked; `started` says whether the command had begun"
    ),
    ErrorCode.SHUTTING_DOWN: (
        "the agent is draining and refused it before starting it: another transport may run it"
    ),
    ErrorCode.INTERNAL_ERROR: (
        "a fault of the agent's own (in its log); the request may not have been done"
    ),
}


@dataclass(frozen=True)
class Request:
    peer: bytes
    request_id: bytes
    operation: bytes
    body: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    request_id: bytes
    kind: bytes
    incarnation: bytes
    frames: list[bytes]  # what follows the incarnation (an OUT's receipt taken off)
    receipt: bytes | None = None  # an OUT's; a DONE's is in its body

    def body(self) -> dict[str, Any]:
        """Decoded once: the reader looks for the receipt, the waiting call for the result."""
        decoded = self.__dict__.get("_body")
        if decoded is None:
            decoded = decode_body(self.frames[0] if self.frames else b"")
            object.__setattr__(self, "_body", decoded)
        return decoded

    def receipt_to_return(self) -> bytes | None:
        if self.kind == OUT:
            return self.receipt
        if self.kind != DONE:
            return None
        try:
            receipt = self.body().get("receipt")
        except WireError:
            return None  # a malformed result: the waiting call reports it
        return receipt if isinstance(receipt, bytes) else None


def encode_body(body: Mapping[str, Any]) -> bytes:
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_body(data: bytes) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise WireError("bad-body", f"body is not msgpack: {exc}") from None
    if not isinstance(value, dict):
        raise WireError("bad-body", f"body must be a map, got {type(value).__name__}")
    return value


def request(request_id: bytes, operation: bytes, body: Mapping[str, Any]) -> list[bytes]:
    return [VERSION, request_id, operation, encode_body(body)]


def parse_request(frames: Sequence[bytes]) -> Request:
    """A request as the agent's ROUTER receives it: [peer, VERSION, id, operation, body]."""
    if len(frames) != 5:
        raise WireError("bad-frames", f"expected 5 frames, got {len(frames)}")
    peer, version, request_id, operation, body = frames
    if version != VERSION:
        raise WireError("bad-version", f"unknown protocol version {version[:16]!r}")
    if not 0 < len(request_id) <= MAX_REQUEST_ID_BYTES:
        raise WireError("bad-request-id", "request id must be 1-16 bytes")
    return Request(peer, request_id, operation, decode_body(body))


def reply(
    peer: bytes, request_id: bytes, kind: bytes, incarnation: bytes, *rest: bytes
) -> list[bytes]:
    return [peer, VERSION, request_id, kind, incarnation, *rest]


def parse_reply(frames: Sequence[bytes]) -> Reply:
    """A reply as the controller's DEALER receives it: [VERSION, id, kind, incarnation, ...]."""
    if len(frames) < 4 or frames[0] != VERSION:
        raise WireError("bad-reply", f"not an agent reply ({len(frames)} frames)")
    rest = list(frames[4:])
    if frames[2] == OUT and len(rest) == 3:  # an agent before receipts sent two frames
        return Reply(frames[1], frames[2], frames[3], rest[:2], rest[2])
    return Reply(frames[1], frames[2], frames[3], rest)


# RUN's body carries the command and the options that travel; `truncate` and `check` are the
# controller's own (what it does with the result), so they stay behind.
RUN_OPTION_FIELDS = ("timeout_s", "env", "cwd", "input", "user", "kill_grace_s", "max_output_bytes")


@dataclass(frozen=True)
class RunMessage:
    """A RUN request's body: written by the executor, read by the agent, checked by the same
    RunOptions both ends use (run_options.py), so the agent refuses what no controller of ours
    would send, with the reason the controller would have given."""

    command: str
    options: RunOptions
    stream: bool = False  # output comes as OUT replies, as it is made
    window: int | None = None  # a stream's output the agent may send ahead of our credit

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"command": self.command, "stream": self.stream}
        for name in RUN_OPTION_FIELDS:
            value = getattr(self.options, name)
            if value is not None:
                body[name] = dict(value) if name == "env" else value
        if self.window is not None:
            body["window"] = self.window
        return body

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> RunMessage:
        command = body.get("command")
        if not isinstance(command, str):
            raise WireError(ErrorCode.BAD_FIELD, "'command' must be a string")
        if "\x00" in command:
            raise WireError(ErrorCode.BAD_FIELD, "a command or cwd cannot hold a NUL")
        fields: dict[str, Any] = {name: body.get(name) for name in RUN_OPTION_FIELDS}
        try:
            options = RunOptions(**fields)
        except InvalidRequestError as exc:
            raise WireError(ErrorCode.BAD_FIELD, exc.message) from None
        window = None if body.get("window") is None else count_field(body, "window")
        return cls(command, options, bool(body.get("stream")), window)


@dataclass(frozen=True)
class PutMessage:
    """PUT: a folder made (`folder`), a small file whole (`data`), or a transfer opened for
    `size` bytes that WRITE pieces then fill; `mode` is the permission bits, else the umask's."""

    path: str
    mode: int | None = None
    data: bytes | None = None
    size: int | None = None
    folder: bool = False

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path}
        if self.mode is not None:
            body["mode"] = self.mode
        if self.folder:
            body["kind"] = "folder"
        elif self.data is not None:
            body["data"] = self.data
        else:
            body["size"] = self.size
        return body

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> PutMessage:
        path, mode = path_field(body), mode_field(body)
        if body.get("kind") == "folder":
            return cls(path, mode, folder=True)
        if "data" in body:
            return cls(path, mode, data=bytes_field(body, "data"))
        return cls(path, mode, size=count_field(body, "size"))


@dataclass(frozen=True)
class WriteMessage:
    """WRITE: the piece at `offset` of an open transfer, in order; `last` puts it in place."""

    transfer: bytes
    offset: int
    data: bytes
    last: bool = False

    def body(self) -> dict[str, Any]:
        return {"transfer": self.transfer, "offset": self.offset, "data": self.data,
                "last": self.last}  # fmt: skip

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> WriteMessage:
        transfer = bytes_field(body, "transfer")
        return cls(transfer, count_field(body, "offset"), bytes_field(body, "data"),
                   bool(body.get("last")))  # fmt: skip


@dataclass(frozen=True)
class GetMessage:
    """GET: `length` bytes from `offset` (a folder answers with its entries); with no offset,
    the whole file in one answer (an older controller's form)."""

    path: str
    offset: int | None = None
    length: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path}
        if self.offset is not None:
            body.update(offset=self.offset, length=self.length)
        return body

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> GetMessage:
        path = path_field(body)
        if "offset" not in body:
            return cls(path)
        return cls(
            path, count_field(body, "offset"), count_field(body, "length", most=MAX_PIECE_BYTES)
        )


@dataclass(frozen=True)
class PingMessage:
    """PING: the request ids the controller has in flight here; the pong names those the
    agent does not know (lost with a restart or a broken connection)."""

    ids: tuple[bytes, ...] = ()

    def body(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> PingMessage:
        asked = body.get("ids", [])
        if (
            not isinstance(asked, list)
            or len(asked) > MAX_PING_IDS  # a pong is not charged: it stays small
            or not all(isinstance(rid, bytes) for rid in asked)
        ):
            raise WireError(
                ErrorCode.BAD_FIELD, f"'ids' must be a list of at most {MAX_PING_IDS} ids"
            )
        return cls(tuple(asked))


@dataclass(frozen=True)
class CancelMessage:
    """CANCEL: kill the command started by request `target` on this connection."""

    target: bytes

    def body(self) -> dict[str, Any]:
        return {"target": self.target}

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> CancelMessage:
        return cls(bytes_field(body, "target"))


@dataclass(frozen=True)
class CreditMessage:
    """CREDIT: `consumed` more bytes of stream `target`'s output were taken by its reader."""

    target: bytes
    consumed: int

    def body(self) -> dict[str, Any]:
        return {"target": self.target, "bytes": self.consumed}

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> CreditMessage:
        return cls(bytes_field(body, "target"), count_field(body, "bytes"))


# -- the replies: each kind's body (or frames), written by the agent, read by the controller --


@dataclass(frozen=True)
class ErrorReply:
    """ERROR: a request refused, or failed. `code` is an ErrorCode (text from an agent newer
    than us is kept as it came); `started`, on key-refused only, says whether it had begun."""

    code: str
    reason: str = ""
    started: bool | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": str(self.code), "reason": self.reason}
        if self.started is not None:
            body["started"] = self.started
        return body

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> ErrorReply:
        """Lenient: a refusal is reported whatever else is wrong with it."""
        code, reason, started = body.get("code"), body.get("reason"), body.get("started")
        return cls(
            "" if code is None else str(code),
            "" if reason is None else str(reason),
            started if isinstance(started, bool) else None,
        )


@dataclass(frozen=True)
class RunDone:
    """DONE for a run: how the command ended (stdout and stderr follow as frames of their
    own, so that megabytes are not copied into and out of msgpack)."""

    exit_status: int
    duration_s: float = 0.0
    truncated: bool = False  # output past the limit was read and dropped
    output_limit: int | None = None  # the limit it ran under
    timed_out: bool = False
    cancelled: bool = False  # killed by a cancel, its controller's silence or the drain

    def body(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> RunDone:
        status, duration, limit = body.get("exit_status"), body.get("duration_s", 0.0), body.get(
            "output_limit"
        )  # fmt: skip
        if isinstance(status, bool) or not isinstance(status, int):
            raise WireError("bad-reply", "a run's result has no exit status")
        return cls(
            status,
            float(duration) if isinstance(duration, int | float) else 0.0,
            bool(body.get("truncated")),
            limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
            bool(body.get("timed_out")),
            bool(body.get("cancelled")),
        )


@dataclass(frozen=True)
class PongReply:
    """PONG: the agent's state and its limits. `unknown` names the asked request ids it does
    not know; `limits` is None in the probe a silent controller's connection is tested with."""

    running: int = 0
    operations: int = 0  # everything counted against --max-concurrent
    held: int = 0  # results waiting for an unread budget
    unread_bytes: int = 0  # what this controller's key has not shown it read
    limits: Mapping[str, int | float] | None = None
    draining: bool = False
    counters: Mapping[str, int] = dataclasses.field(default_factory=dict)
    unknown: tuple[bytes, ...] = ()
    version: str = ""  # the zcl release the agent runs (a rolling upgrade waits for it)

    def body(self) -> dict[str, Any]:
        if self.limits is None:  # the probe: nothing a controller would learn from
            return {"unknown": list(self.unknown)}
        body = dataclasses.asdict(self)
        body.update(limits=dict(self.limits), counters=dict(self.counters))
        body["unknown"] = list(self.unknown)
        return body

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> PongReply:
        """Lenient: what does not parse is left out, as from an older agent."""
        limits, counters, unknown = body.get("limits"), body.get("counters"), body.get("unknown")

        def number(name: str) -> int:
            value = body.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(
            running=number("running"),
            operations=number("operations"),
            held=number("held"),
            unread_bytes=number("unread_bytes"),
            limits=None if not isinstance(limits, dict) else {
                k: v for k, v in limits.items() if isinstance(v, int | float)
            },
            draining=bool(body.get("draining")),
            counters={} if not isinstance(counters, dict) else {
                k: v for k, v in counters.items() if isinstance(v, int)
            },
            unknown=tuple(r for r in unknown if isinstance(r, bytes))
            if isinstance(unknown, list) else (),
            version=str(body.get("version") or "")[:64],
        )  # fmt: skip


@dataclass(frozen=True)
class OutReply:
    """OUT: a chunk of a streaming command's output, and the receipt to send back for it."""

    stream: bytes  # STDOUT or STDERR
    data: bytes
    receipt: bytes

    def frames(self) -> list[bytes]:
        return [self.stream, self.data, self.receipt]

    @classmethod
    def read(cls, reply: Reply) -> OutReply:
        if reply.kind != OUT or len(reply.frames) != 2 or reply.frames[0] not in (STDOUT, STDERR):
            raise WireError("bad-reply", "not an output chunk")
        return cls(reply.frames[0], reply.frames[1], reply.receipt or b"")


@dataclass(frozen=True)
class FilePiece:
    """DONE for a get of a file: the bytes at the offset asked, and the file's size and mode."""

    data: bytes
    size: int
    mode: int

    def body(self) -> dict[str, Any]:
        return {"kind": "file", "data": self.data, "size": self.size, "mode": self.mode}


@dataclass(frozen=True)
class FolderListing:
    """DONE for a get of a folder: its mode and its entries as (name, kind, mode, size),
    kind being "file", "folder" or another word for what a get does not copy."""

    mode: int
    entries: tuple[tuple[str, str, int, int], ...]

    def body(self) -> dict[str, Any]:
        entries = [list(entry) for entry in self.entries]
        return {"kind": "folder", "mode": self.mode, "entries": entries}


def read_got(body: Mapping[str, Any]) -> FilePiece | FolderListing:
    """A get's answer, checked as any input is: a name that would climb out of the folder
    asked for, or a piece bigger than its file, is a bad reply, never a path written to."""
    kind, mode = body.get("kind"), body.get("mode")
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o177777:
        raise WireError("bad-reply", "a get's answer has no mode")
    if kind == "folder":
        entries = body.get("entries")
        if not isinstance(entries, list):
            raise WireError("bad-reply", "a folder's answer has no entries")
        return FolderListing(mode, tuple(_entry(entry) for entry in entries))
    data, size = body.get("data"), body.get("size")
    if kind != "file" or not isinstance(data, bytes) or isinstance(size, bool):
        raise WireError("bad-reply", "a get's answer is neither a piece nor a folder")
    if not isinstance(size, int) or not len(data) <= size:
        raise WireError("bad-reply", "a piece larger than its file")
    return FilePiece(data, size, mode)


def _entry(entry: object) -> tuple[str, str, int, int]:
    if not isinstance(entry, list) or len(entry) != 4:
        raise WireError("bad-reply", f"a folder entry is not (name, kind, mode, size): {entry!r}")
    name, kind, mode, size = entry
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\x00" in name:
        raise WireError("bad-reply", f"the agent listed a bad name: {name!r}")
    if not isinstance(kind, str) or not isinstance(mode, int) or not isinstance(size, int):
        raise WireError("bad-reply", f"a folder entry is not (name, kind, mode, size): {entry!r}")
    return name, kind, mode, size


def path_field(body: Mapping[str, Any]) -> str:
    """An absolute path with no NUL (where it may reach is the agent's file_access)."""
    text = body.get("path")
    if not isinstance(text, str):
        raise WireError(ErrorCode.BAD_FIELD, "'path' must be a string")
    if "\x00" in text:  # no file name holds one; the OS call would raise, not answer
        raise WireError(ErrorCode.BAD_PATH, "a path cannot contain a NUL character")
    if not text.startswith("/"):
        raise WireError(ErrorCode.BAD_PATH, f"path must be absolute, got {text[:200]!r}")
    return text


# Field readers for request bodies: a wrong type is a clear error, not a crash in a handler.


def count_field(body: Mapping[str, Any], name: str, *, most: int = 2**63 - 1) -> int:
    """A whole number from 0 to `most`: sizes, offsets, lengths."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise WireError(ErrorCode.BAD_FIELD, f"{name!r} must be a whole number from 0 to {most}")
    return value


def mode_field(body: Mapping[str, Any]) -> int | None:
    """A file's permission bits (0 to 0o7777), or None for the umask's default."""
    if body.get("mode") is None:
        return None
    return count_field(body, "mode", most=0o7777)


def receipts_field(body: Mapping[str, Any]) -> list[bytes]:
    """A request's `read`: receipts of replies the controller has taken off its socket."""
    value = body.get("read")
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_RECEIPTS
        or not all(isinstance(receipt, bytes) for receipt in value)
    ):
        raise WireError(
            ErrorCode.BAD_FIELD, f"'read' must be a list of at most {MAX_RECEIPTS} receipts"
        )
    return value


def bytes_field(body: Mapping[str, Any], name: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, bytes):
        raise WireError(ErrorCode.BAD_FIELD, f"{name!r} must be bytes")
    return value
