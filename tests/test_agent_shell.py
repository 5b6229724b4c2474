"""The agent's shell (node_agent.NodeAgent) carrying out what its session decided: an action
that fails is logged and counted, and the rest of its batch is still carried out, so that
nothing a controller does (a put's folder made read-only, say) can stop housekeeping or leave
a charge that is never returned."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from zcl import agent_wire as wire
from zcl.agent.agent_session import Discard
from zcl.agent.node_agent import AgentConfig, NodeAgent

pytestmark = pytest.mark.timeout(30)


class Unremovable:
    def discard(self) -> None:
        raise PermissionError(13, "Permission denied", "/srv/ro/.x.partial")


@pytest.fixture
def agent() -> Iterator[NodeAgent]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made = NodeAgent(AgentConfig(warm_shells=0), ctx)  # never served: no socket is opened
    yield made
    made.warm.close()
    ctx.term()


def test_a_failing_action_does_not_lose_the_rest_of_its_batch(agent: NodeAgent) -> None:
    session = agent.session
    req = session.receive([b"peer", *wire.request(b"g1", wire.GET, {})], None, 0.0)
    assert req is not None
    agent.staged[(b"peer", b"handle")] = Unremovable()  # type: ignore[assignment]
    session.outbox.append(Discard((b"peer", b"handle")))
    session.finish(req, {"data": b"x" * 1000}, (), 0.0)  # a Send after the failing Discard
    assert session.ledger.owed_by(b"peer") > 1000
    assert not agent.carry_out()  # no socket: the reply could not go, and says so
    assert session.ledger.owed_by(b"peer") == 0  # its charge came back: the Send was reached
    assert agent.counters["internal-error"] == 1
    assert session.outbox == []
