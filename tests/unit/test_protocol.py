"""protocol: MDP/0.2 frames parsed and built exactly as the spec's tables say."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster_patterns import protocol as mdp

ID = b"\x00peer"


@pytest.mark.parametrize("delimited", [False, True])
def test_client_request_in_both_forms(delimited: bool) -> None:
    frames = [ID, *([b""] if delimited else []), b"MDPC02", b"\x01", b"echo", b"a", b"b"]
    msg = mdp.parse_at_broker(frames)
    assert (msg.sender, msg.delimited, msg.header, msg.command) == (
        ID,
        delimited,
        mdp.CLIENT,
        b"\x01",
    )
    assert msg.frames == [b"echo", b"a", b"b"]


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([ID], "short"),
        ([ID, b"MDPC02"], "short"),
        ([ID, b"XXXX02", b"\x01"], "bad-header"),
        ([ID, b"MDPC02", b"\x02", b"echo"], "bad-command"),
        ([ID, b"MDPC02", b"\x01"], "bad-request"),
        ([ID, b"MDPC02", b"\x01", b""], "bad-request"),
        ([ID, b"MDPW02", b"\x01"], "bad-ready"),
        ([ID, b"MDPW02", b"\x01", b"a", b"b"], "bad-ready"),
        ([ID, b"MDPW02", b"\x04", b"client", b"not-empty", b"x"], "bad-envelope"),
        ([ID, b"MDPW02", b"\x04", b"client"], "bad-envelope"),
        ([ID, b"MDPW02", b"\x05", b"extra"], "bad-frames"),
        ([ID, b"MDPW02", b"\x09"], "bad-command"),
    ],
)
def test_invalid_messages_are_refused_with_a_kind(frames: list[bytes], kind: str) -> None:
    with pytest.raises(mdp.ProtocolError) as error:
        mdp.parse_at_broker(frames)
    assert error.value.kind == kind


def test_request_from_a_worker_is_valid_but_unexpected() -> None:
    msg = mdp.parse_at_broker([ID, b"MDPW02", b"\x02", b"client", b"", b"x"])
    assert msg.command == mdp.W_REQUEST  # parsing accepts it; the coordinator answers DISCONNECT


def test_builders_produce_the_spec_frames() -> None:
    assert mdp.to_worker(ID, False, mdp.W_REQUEST, b"c", b"", b"x") == [
        ID,
        b"MDPW02",
        b"\x02",
        b"c",
        b"",
        b"x",
    ]
    assert mdp.to_client(ID, True, mdp.C_FINAL, b"echo", b"x") == [
        ID,
        b"",
        b"MDPC02",
        b"\x03",
        b"echo",
        b"x",
    ]
    assert mdp.parse_at_worker(mdp.to_worker(ID, True, mdp.W_HEARTBEAT)[1:]) == (b"\x05", [])
    assert mdp.parse_at_client([b"MDPC02", b"\x03", b"echo", b"x"]) == (b"\x03", b"echo", [b"x"])


def test_error_bodies_keep_the_correlation_frame() -> None:
    body = mdp.error_body([b"corr-7", b"args"], "no worker")
    assert body[0] == b"corr-7" and mdp.error_reason(body) == "no worker"
    assert mdp.error_reason([b"corr-7", b"result"]) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"echo", mdp.ServiceRequest(b"echo")),
        (b"echo@w3", mdp.ServiceRequest(b"echo", pinned=b"w3")),
        (b"echo#gpu,a100", mdp.ServiceRequest(b"echo", tags=frozenset({"gpu", "a100"}))),
        (b"echo#", mdp.ServiceRequest(b"echo")),
        (b"echo#\x80", mdp.ServiceRequest(b"echo", tags=frozenset({"\ufffd"}))),
    ],
)
def test_service_names(name: bytes, expected: mdp.ServiceRequest) -> None:
    assert mdp.parse_service_name(name) == expected


@pytest.mark.parametrize("codec", sorted(mdp.CODECS))
def test_codecs_round_trip(codec: str) -> None:
    value = {"seconds": 0.5, "cmd": "true", "list": [1, 2]}
    assert mdp.get_codec(codec).decode(mdp.get_codec(codec).encode(value)) == value


def test_unknown_codec() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        mdp.get_codec("xml")


frame_lists = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.sampled_from(
            [b"", b"MDPC02", b"MDPW02", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06"]
        ),
    ),
    max_size=8,
)


@given(frame_lists)
def test_parsers_accept_or_refuse_but_never_crash(frames: list[bytes]) -> None:
    for parse in (mdp.parse_at_broker, mdp.parse_at_worker, mdp.parse_at_client):
        with contextlib.suppress(mdp.ProtocolError):
            parse(frames)
