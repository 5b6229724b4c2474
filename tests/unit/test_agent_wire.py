"""The agent's wire format: what parses, and what is refused with which counter name."""

from __future__ import annotations

import pytest

from zcl import agent_wire as wire
from zcl.errors import WireError


def test_a_request_round_trips() -> None:
    frames = [b"peer", *wire.request(b"id1", wire.RUN, {"command": "true"})]
    parsed = wire.parse_request(frames)
    assert (parsed.peer, parsed.request_id, parsed.operation) == (b"peer", b"id1", wire.RUN)
    assert parsed.body == {"command": "true"}


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([b"p", wire.VERSION, b"id", wire.RUN], "bad-frames"),
        ([b"p", b"ZCA0", b"id", wire.RUN, b"\x80"], "bad-version"),
        ([b"p", wire.VERSION, b"", wire.RUN, b"\x80"], "bad-request-id"),
        ([b"p", wire.VERSION, b"x" * 17, wire.RUN, b"\x80"], "bad-request-id"),
        ([b"p", wire.VERSION, b"id", wire.RUN, b"\xc1"], "bad-body"),
        ([b"p", wire.VERSION, b"id", wire.RUN, b"\x93\x01\x02\x03"], "bad-body"),
    ],
)
def test_malformed_requests_name_their_fault(frames: list[bytes], kind: str) -> None:
    with pytest.raises(WireError) as refused:
        wire.parse_request(frames)
    assert refused.value.kind == kind


def test_field_readers_refuse_wrong_types() -> None:
    """Texts, numbers and environments are RUN's, read through RunOptions (RunMessage.read)."""
    body = {"s": "x", "n": 2, "neg": -1, "flag": True, "env": {"A": "1"}, "bad_env": {"A-B": "1"}}
    run = wire.RunMessage.read({"command": body["s"], "timeout_s": body["n"], "env": body["env"]})
    assert (run.command, run.options.timeout_s, run.options.env) == ("x", 2, {"A": "1"})
    assert wire.RunMessage.read({"command": "x"}).options.cwd is None
    for refused in (
        {"command": body["n"]},
        {"command": "x", "timeout_s": body["neg"]},
        {"command": "x", "timeout_s": body["flag"]},
        {"command": "x", "env": body["bad_env"]},
    ):
        with pytest.raises(WireError):
            wire.RunMessage.read(refused)
    with pytest.raises(WireError):
        wire.bytes_field(body, "s")


def test_replies_parse_and_refuse_strangers() -> None:
    frames = wire.reply(b"peer", b"id", wire.DONE, b"inc", wire.encode_body({"exit_status": 0}))
    parsed = wire.parse_reply(frames[1:])  # the DEALER sees no peer frame
    assert (parsed.request_id, parsed.kind, parsed.incarnation) == (b"id", wire.DONE, b"inc")
    assert parsed.body() == {"exit_status": 0}
    with pytest.raises(WireError):
        wire.parse_reply([b"HTTP", b"id", wire.DONE, b"inc"])


def test_a_gets_answer_is_checked_before_anything_is_written() -> None:
    piece = wire.FilePiece(b"abc", 10, 0o644)
    assert wire.read_got(piece.body()) == piece
    listing = wire.FolderListing(0o755, (("a", "file", 0o644, 3), ("sub", "folder", 0o755, 0)))
    assert wire.read_got(listing.body()) == listing
    for bad in (
        {"kind": "file", "data": b"abcd", "size": 3, "mode": 0o644},  # more than the file
        {"kind": "file", "data": b"a", "mode": 0o644},  # no size
        {"kind": "file", "data": "text", "size": 4, "mode": 0o644},
        {"kind": "folder", "entries": []},  # no mode
        {"kind": "folder", "mode": 0o755, "entries": [["..", "folder", 0o755, 0]]},
        {"kind": "folder", "mode": 0o755, "entries": [["a/b", "file", 0o644, 0]]},
        {"kind": "folder", "mode": 0o755, "entries": [["a", "file"]]},
        {"kind": "socket", "mode": 0o755},
    ):
        with pytest.raises(WireError):
            wire.read_got(bad)
