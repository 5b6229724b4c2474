"""The unit tier: rules tested alone, in milliseconds. A test here that reaches for the
network, ZeroMQ or a process fails at once, so the tier stays what its name says; tests that
need those belong one folder up, in the system tier. (asyncio's own self-pipe, a socketpair,
is allowed: it never leaves the process.)"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import zmq


def _refused(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a unit test may not use {what}: move it to the system tier")

    return refuse


@pytest.fixture(autouse=True)
def no_sockets_no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, _refused(f"socket.{method}"))
    monkeypatch.setattr(zmq.Context, "socket", _refused("a ZeroMQ socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("a process"))
    yield
