"""An agent's replies are input like any other: a controller that gets a file from a node
whose agent lies (compromised, or simply broken) gets a RemoteError, a ZclError, and nothing
is written outside the folder it asked for. The agent here is a bare ROUTER that speaks the
wire protocol from zcl/WIRE.md and answers every get with the body it is given."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from zcl import RemoteError, ZmqNodeExecutor
from zcl import agent_wire as wire

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]


class LyingAgent:
    """Answers each get with `answers`, in turn (the last repeated), and pings truthfully."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers, self.ctx = answers, zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        gets = 0
        while not self.stop.is_set():
            if not self.sock.poll(50):
                continue
            peer, _, rid, operation, _ = self.sock.recv_multipart()
            if operation == wire.PING:
                body = wire.PongReply(limits={"max_file_bytes": 1 << 30}).body()
                kind = wire.PONG
            elif operation == wire.GET:
                body, kind = self.answers[min(gets, len(self.answers) - 1)], wire.DONE
                gets += 1
            else:
                continue
            self.sock.send_multipart(wire.reply(peer, rid, kind, b"liar", wire.encode_body(body)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def liar(request: pytest.FixtureRequest) -> Iterator[LyingAgent]:
    agent = LyingAgent(request.param)
    yield agent
    agent.close()


CLIMBS = [{"kind": "folder", "mode": 0o755, "entries": [["../escaped", "file", 0o644, 1]]}]
NO_SIZE = [{"kind": "file", "data": b"x", "mode": 0o644}]
TOO_BIG = [{"kind": "file", "data": b"xxxx", "size": 2, "mode": 0o644}]
BECOMES_A_FOLDER = [
    {"kind": "file", "data": b"x" * 10, "size": 20, "mode": 0o644},
    {"kind": "folder", "mode": 0o755, "entries": []},
]


@pytest.mark.parametrize(
    "liar",
    [CLIMBS, NO_SIZE, TOO_BIG, BECOMES_A_FOLDER],
    ids=["a-name-that-climbs", "no-size", "a-piece-past-its-size", "a-file-becomes-a-folder"],
    indirect=True,
)
async def test_a_lying_agent_is_a_remote_error_and_nothing_lands_outside(
    liar: LyingAgent, tmp_path: Path
) -> None:
    target = tmp_path / "inside" / "got"
    target.parent.mkdir()
    async with ZmqNodeExecutor("liar", liar.endpoint, None) as executor:
        with pytest.raises(RemoteError):
            await executor.get_file("/data", target)
    assert [p.name for p in tmp_path.rglob("*")] == ["inside"]  # no file, no partial, no folder
