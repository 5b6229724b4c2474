"""router_dealer: identities in the envelope, LRU over every worker, replies matched by id."""

from __future__ import annotations

from zmq_basics import router_dealer


def test_broker_routes_every_request_and_uses_every_worker() -> None:
    result = router_dealer.demo(clients=3, requests=6, workers=3)
    assert sum(result.served_by.values()) == result.requests == 18
    assert set(result.served_by) == {"w1", "w2", "w3"}
    identity, request_id, body = result.envelope
    assert len(identity) == 5 and identity[0] == 0  # libzmq's generated identity
    assert body == b"job " + request_id
