"""The real sshd helper: it serves, and it leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from zcl_lab import openssh_server
from zcl_lab.openssh_server import OpenSshServer, SshdUnavailableError


def test_it_runs_commands_and_cleans_up(sshd: OpenSshServer) -> None:
    command = sshd.ssh_command("echo $0; id -un")
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    shell, user = done.stdout.split()
    assert user == sshd.user
    assert Path(sshd.login_shell).name == Path(shell).name
    folder, port, process = sshd.dir, sshd.port, sshd.process
    sshd.stop()
    assert process is not None and process.poll() is not None
    assert not folder.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_a_missing_sshd_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openssh_server, "SSHD", "/nonexistent/sshd")
    with pytest.raises(SshdUnavailableError, match="install Debian's openssh-server"):
        OpenSshServer().start()
