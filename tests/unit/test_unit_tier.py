"""The unit tier's guard holds: a socket, a ZeroMQ socket or a process in a unit test fails."""

from __future__ import annotations

import socket
import subprocess

import pytest
import zmq

pytestmark = pytest.mark.timeout(10)


def test_a_socket_connection_fails_a_unit_test() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="system tier"):
        sock.connect(("127.0.0.1", 9))


def test_a_zeromq_socket_fails_a_unit_test() -> None:
    with zmq.Context() as ctx, pytest.raises(AssertionError, match="system tier"):
        ctx.socket(zmq.DEALER)


def test_a_process_fails_a_unit_test() -> None:
    with pytest.raises(AssertionError, match="system tier"):
        subprocess.run(["true"], check=False)
