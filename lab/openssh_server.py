"""A real OpenSSH sshd on a free loopback port, in a temporary directory, for the SSH baseline.

cluster_runner reaches its nodes through sshd today, so the baseline must be the real thing, not
an in-process stand-in: `OpenSshServer` writes a host key, a client key, authorized_keys,
known_hosts and an sshd_config into a temporary directory, starts `/usr/sbin/sshd -D` on
127.0.0.1 with them, and stops it and removes the directory on exit.

Two choices keep the comparison fair to SSH:
- sshd runs every command through the login user's shell, and a shell that starts slowly (root's
  bash here sources a .bashrc that runs `pyenv init`: 160 ms) would be charged to SSH. So when
  we are root and the user `zclab` exists (`make test` creates it, shell /bin/sh) we log in as
  that user; otherwise as ourselves, and `login_shell` tells which shell paid;
- `MaxSessions` is raised so one connection can carry as many commands in flight as the ZeroMQ
  side gets (OpenSSH's default of 10 would throttle the SSH throughput figure).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from zcl.protocols import NodeDescriptor

SSHD = "/usr/sbin/sshd"
FAST_SHELL_USER = "zclab"  # created by `make test` when run as root: shell /bin/sh, no rc files
SSH_KEYGEN = "ssh-keygen"
START_TIMEOUT_S = 10.0
# Unauthenticated connections at once: from 100 on, 30% are dropped, rising to all at 200
# (OpenSSH's default is 10:30:100). The fan-out benchmark records where it bites.
MAX_STARTUPS = "100:30:200"


class SshdUnavailableError(RuntimeError):
    """OpenSSH server is not installed or cannot start here."""


def sshd_missing_reason() -> str | None:
    """Why no sshd can be started here, or None when it can."""
    if not Path(SSHD).exists():
        return f"{SSHD} not found: install Debian's openssh-server (make test does, as root)"
    if shutil.which(SSH_KEYGEN) is None:
        return "ssh-keygen not found: install Debian's openssh-client"
    return None


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def login_user() -> pwd.struct_passwd:
    """The account SSH commands run as: the fast-shell user where we may use it, else us."""
    if os.geteuid() == 0:
        try:
            return pwd.getpwnam(FAST_SHELL_USER)
        except KeyError:
            pass
    return pwd.getpwuid(os.geteuid())


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


class OpenSshServer:
    """Start with `with OpenSshServer() as sshd:`; connect to sshd.host:sshd.port as sshd.user."""

    host = "127.0.0.1"

    def __init__(self, max_sessions: int = 128) -> None:
        self.max_sessions = max_sessions
        account = login_user()
        self.user, self.login_shell = account.pw_name, account.pw_shell
        self.port = 0
        self.dir = Path()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def start(self) -> OpenSshServer:
        reason = sshd_missing_reason()
        if reason:
            raise SshdUnavailableError(reason)
        self.dir = Path(tempfile.mkdtemp(prefix="zcl-sshd-"))
        # sshd reads authorized_keys as the login user, so the folder must let it in; the
        # private keys inside stay 0600.
        os.chmod(self.dir, 0o755)
        _keygen(self.dir / "host_ed25519", "zcl-host")
        _keygen(self.client_key, "zcl-controller")
        shutil.copy(self.client_key.with_suffix(".pub"), self.dir / "authorized_keys")
        self.port = free_loopback_port()
        host_public = (self.dir / "host_ed25519.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {' '.join(host_public)}\n")
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.host}",
                    f"Port {self.port}",
                    f"HostKey {self.dir / 'host_ed25519'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PrintMotd no",
                    "UseDNS no",
                    "LogLevel ERROR",
                    f"MaxSessions {self.max_sessions}",
                    f"MaxStartups {MAX_STARTUPS}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        process = self.process
        if process is None:  # a bug of ours: called before the start
            raise RuntimeError("sshd was never started")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                detail = process.stderr.read().decode() if process.stderr else ""
                self.stop()
                raise SshdUnavailableError(f"sshd exited at start: {detail.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)  # polling a port that is not open yet; nothing to wait on
        self.stop()
        raise SshdUnavailableError(f"sshd did not listen on {self.host}:{self.port} within 10 s")

    def node(self, node_id: str, **fields: Any) -> NodeDescriptor:
        """A node descriptor that reaches this server, as cluster_runner's descriptor would."""
        fields.setdefault("ssh_known_hosts_path", str(self.known_hosts))
        return NodeDescriptor(
            node_id=node_id,
            host=self.host,
            ssh_port=self.port,
            ssh_user=self.user,
            ssh_key_path=str(self.client_key),
            **fields,
        )

    def ssh_command(self, command: str) -> list[str]:
        """The OpenSSH client command line that runs `command` through this server."""
        return [
            "ssh",
            "-q",
            "-i",
            str(self.client_key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"{self.user}@{self.host}",
            command,
        ]

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        if self.dir != Path() and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OpenSshServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
