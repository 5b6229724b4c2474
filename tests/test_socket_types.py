"""socket_types: every valid pairing delivers, every invalid one is dropped at the handshake."""

from __future__ import annotations

import zmq

from zmq_basics import socket_types


def test_valid_and_invalid_pairings() -> None:
    result = socket_types.demo()
    assert len(result.valid) == len(socket_types.VALID) == 12
    assert result.valid["REQ-ROUTER"] == "delivered both ways"
    assert result.valid["PUB-SUB"] == "delivered one way"
    assert all(outcome.startswith("delivered") for outcome in result.valid.values())
    assert set(result.invalid.values()) == {"DISCONNECTED, nothing delivered"}


def test_envelope_rules() -> None:
    assert socket_types.envelope(zmq.DEALER, zmq.REP) == [b""]
    assert socket_types.envelope(zmq.ROUTER, zmq.ROUTER) == [socket_types.RECEIVER_ID]
    assert socket_types.envelope(zmq.REQ, zmq.REP) == []
