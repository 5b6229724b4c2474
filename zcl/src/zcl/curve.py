"""CurveZMQ keys read from files, and the ZAP check, shared by every server of ours.

A server (the node agent, the journal collector, step 02's coordinator) has a key pair and an
authorized_keys file: one Z85 public key per line, then a name. A client (a controller, a
journal writer, a worker, an MDP client, the monitor) has a key pair and a known_hosts file,
"NAME KEY" per line, pinning the servers it talks to. The folders are laid out and rotated by
zcl.keys (`zcl-keys`); this module only reads them, so step 02 needs nothing of step 03:

    KEYDIR/nodes/SERVER/host.key_secret, authorized_keys     load_agent_keys(folder)
    KEYDIR/controllers/CLIENT/id.key_secret, known_hosts      load_controller_keys(folder)

pyzmq's authenticator calls AuthorizedKeys at each handshake (ZAP, RFC 27); a server that
must also drop sessions of a key revoked later checks `allows` on each message (recv_now_as).
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.auth.thread import ThreadAuthenticator

from zcl.errors import KeyFileError

Z85_KEY_LENGTH = 40
log = logging.getLogger("zcl.curve")  # its module path, also under python -m


@dataclass(frozen=True)
class AgentKeys:
    public: bytes
    secret: bytes
    authorized_keys: Path


@dataclass(frozen=True)
class ControllerKeys:
    public: bytes
    secret: bytes
    known_hosts: dict[str, bytes]

    def agent_key(self, node_id: str) -> bytes:
        try:
            return self.known_hosts[node_id]
        except KeyError:
            raise KeyFileError(f"no pinned key for node {node_id!r} in known_hosts") from None


# What OpenSSH's StrictModes refuses, and so do we: a secret key that anyone but its owner may
# read, a list of trusted keys that anyone but its owner may rewrite, or either in a folder
# (or below one) that another user may rename entries in, since that user could swap the file.
def check_owned_safely(path: Path, forbidden_bits: int, what: str) -> None:
    """`path` and every folder above it are owned by us or root, and none has a bit of
    `forbidden_bits` (the file) or group/other write (the folders; a root-owned sticky folder
    such as /tmp is fine: nobody may rename what is not theirs there)."""
    me = os.geteuid()
    try:
        info = path.stat()
    except FileNotFoundError:
        return  # its reader says so, in its own words
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    if info.st_uid not in (me, 0):
        raise KeyFileError(f"{what} {path} is owned by uid {info.st_uid}, not by this user or root")
    if info.st_mode & forbidden_bits:
        mode = stat.S_IMODE(info.st_mode)
        raise KeyFileError(f"{what} {path} has mode {mode:04o}: bad permissions (like ssh's)")
    check_folders_safe(path.parent)


def check_folders_safe(folder: Path) -> None:
    """`folder` and each above it: owned by us or root, writable by nobody else (or sticky)."""
    me = os.geteuid()
    for above in [folder.absolute(), *folder.absolute().parents]:
        try:
            info = above.stat()
        except FileNotFoundError:
            continue  # not made yet (zcl-keys generate): its parent decides
        sticky_root = info.st_mode & stat.S_ISVTX and info.st_uid == 0
        if info.st_uid not in (me, 0) or (info.st_mode & 0o022 and not sticky_root):
            raise KeyFileError(
                f"{above} is owned by uid {info.st_uid} with mode "
                f"{stat.S_IMODE(info.st_mode):04o}: another user could swap the keys below it"
            )


def key_pair(folder: Path, stem: str) -> tuple[bytes, bytes]:
    path = folder / f"{stem}.key_secret"
    check_owned_safely(path, 0o077, "secret key")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read key pair {path}: {exc}") from None
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key")
    return public, secret


def check_key(text: str, where: str) -> bytes:
    if len(text) != Z85_KEY_LENGTH:
        raise KeyFileError(f"{where}: expected a {Z85_KEY_LENGTH}-character Z85 key, got {text!r}")
    return text.encode()


ROLES = frozenset({"client", "worker", "monitor"})  # what roles= may give a key (coordinator)


def read_authorized_keys(path: Path) -> dict[bytes, str]:
    """Public key -> name, from an authorized_keys file; blank lines and # comments skipped."""
    return {key: name for key, (name, _) in read_authorized_entries(path).items()}


def read_authorized_entries(path: Path) -> dict[bytes, tuple[str, frozenset[str] | None]]:
    """Public key -> (name, roles) for lines `KEY [NAME] [roles=a,b]`; roles None: any (a line
    without roles=, as every file before roles; the coordinator's client, worker, monitor)."""
    entries: dict[bytes, tuple[str, frozenset[str] | None]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            key, *words = line.split()
            roles = [w for w in words if w.startswith("roles=")]
            name = " ".join(w for w in words if not w.startswith("roles="))
            listed = roles[-1].removeprefix("roles=").split(",") if roles else []
            given = frozenset(role for role in listed if role)
            if given - ROLES:  # a typo would lock the key out without a word
                unknown = ", ".join(sorted(given - ROLES))
                raise KeyFileError(f"{path}:{number}: unknown role {unknown} (roles are "
                                   f"{', '.join(sorted(ROLES))})")  # fmt: skip
            entries[check_key(key, f"{path}:{number}")] = (name, given if roles else None)
    return entries


def read_known_hosts(path: Path) -> dict[str, bytes]:
    hosts: dict[str, bytes] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            node, _, key = line.partition(" ")
            hosts[node] = check_key(key.strip(), f"{path}:{number}")
    return hosts


class AuthorizedKeys:
    """Which controller keys the agent accepts, from authorized_keys, reread when it changes.

    `callback` is the ZAP check at each CurveZMQ handshake; `allows` is the agent's check on
    every message, so a key revoked while its controller is connected loses that session too.
    `generation` counts the changes, for whoever must act on one (the agent's housekeeping).
    """

    def __init__(
        self, path: Path, counters: Counter[str], domain_roles: Mapping[str, str] | None = None
    ) -> None:
        """`domain_roles`: the role a key needs to pass the handshake on a socket of that ZAP
        domain (the coordinator's events socket: monitor)."""
        self.path, self.counters = path, counters
        self.domain_roles = dict(domain_roles or {})
        self.roles: dict[str, frozenset[str] | None] = {}  # User-Id -> its roles (None: any)
        self.stamp: tuple[int, ...] | None = None
        self.refusals = RepeatedLines()  # one line per unknown key per minute, not one per try
        self.keys: dict[bytes, str] = {}
        self.user_ids: frozenset[str] = frozenset()
        self.generation = 0
        self.unreadable = False
        self.peer = "an unknown address"  # the one being checked, told by the ZAP handler

    def refresh(self) -> None:
        """Reread the file if it changed (a new inode, time, size, owner or mode) since the
        last look; one that others may write to trusts nobody, as with sshd's StrictModes."""
        try:
            found = self.path.stat()
            stamp = (found.st_ino, found.st_mtime_ns, found.st_size, found.st_uid, found.st_mode)
            if stamp == self.stamp:
                return
            check_owned_safely(self.path, 0o022, "authorized_keys")
            entries, self.stamp, self.unreadable = read_authorized_entries(self.path), stamp, False
        except (OSError, KeyFileError) as exc:
            if not self.unreadable:  # once per failure, not once per look
                log.error("cannot read %s, refusing everyone: %s", self.path, exc)
            entries, self.stamp, self.unreadable = {}, None, True
        roles = {key.decode(): given for key, (_, given) in entries.items()}
        if entries.keys() != self.keys.keys() or roles != self.roles:
            self.generation += 1
            self.counters["authorized-keys.changed"] += 1  # a test or an operator sees it taken in
        self.keys = {key: name for key, (name, _) in entries.items()}
        self.roles = roles
        self.user_ids = frozenset(roles)

    def allows(self, user_id: str) -> bool:
        """Is this sender (pyzmq's User-Id for a CurveZMQ client: its key in Z85) still listed?"""
        return user_id in self.user_ids

    def may(self, user_id: str, role: str) -> bool:
        """Is this sender listed, with `role` among its roles (or no roles= at all)?"""
        if user_id not in self.user_ids:
            return False
        given = self.roles.get(user_id)
        return given is None or role in given

    def callback(self, domain: str, key: bytes) -> bool:
        self.refresh()
        needed = self.domain_roles.get(domain)
        if key in self.keys and needed is not None and not self.may(key.decode(), needed):
            self.counters["refused.no-role"] += 1
            log.warning("refused key %s from %s: no %s role", key.decode(), self.peer, needed)
            return False
        if key in self.keys:
            log.debug("controller %s authenticated", self.keys[key] or key.decode())
            return True
        self.counters["refused.unknown-key"] += 1
        shown = key.decode(errors="replace")
        quiet = self.refusals.due(shown, time.monotonic())
        if quiet is not None:
            log.warning(
                "refused controller key %s from %s: not in %s%s",
                shown,
                self.peer,
                self.path,
                f" ({quiet} more refusals of it since the last line)" if quiet else "",
            )
        return False


class RepeatedLines:
    """How often a line about one peer is logged: the first at once, then at most one per
    `interval_s`, saying how many were held back. A peer retrying every few milliseconds
    wrote 2,450 warnings in 7 s; the log is for people. State only; the time is given."""

    def __init__(self, interval_s: float = 60.0, most_peers: int = 10_000) -> None:
        self.interval_s, self.most_peers = interval_s, most_peers
        self.last: dict[str, tuple[float, int]] = {}  # peer -> (logged at, held back since)

    def due(self, peer: str, now: float) -> int | None:
        """None: hold this one back; otherwise log it, with the count held back since."""
        logged = self.last.get(peer)
        if logged is not None and now - logged[0] < self.interval_s:
            self.last[peer] = (logged[0], logged[1] + 1)
            return None
        if logged is None and len(self.last) >= self.most_peers:
            self.last = {p: v for p, v in self.last.items() if now - v[0] < self.interval_s}
            if len(self.last) >= self.most_peers:
                return None  # a flood of distinct keys: bounded memory over one more line
        self.last[peer] = (now, 0)
        return 0 if logged is None else logged[1]


def load_agent_keys(folder: Path) -> AgentKeys:
    public, secret = key_pair(folder, "host")
    authorized = folder / "authorized_keys"
    if not authorized.exists():
        raise KeyFileError(f"{authorized} is missing: no controller could ever connect")
    check_owned_safely(authorized, 0o022, "authorized_keys")
    return AgentKeys(public, secret, authorized)


def load_controller_keys(folder: Path) -> ControllerKeys:
    public, secret = key_pair(folder, "id")
    known = folder / "known_hosts"
    return ControllerKeys(public, secret, read_known_hosts(known) if known.exists() else {})


def serve_curve(sock: zmq.Socket[bytes], keys: AgentKeys) -> None:
    """Make `sock` a CurveZMQ server with this key pair (before bind)."""
    sock.curve_server = True
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public


def connect_curve(sock: zmq.Socket[bytes], keys: ControllerKeys, server: str) -> None:
    """Make `sock` a CurveZMQ client pinning the key known_hosts lists for `server`."""
    sock.curve_publickey, sock.curve_secretkey = keys.public, keys.secret
    sock.curve_serverkey = keys.agent_key(server)


def start_authenticator(
    ctx: zmq.Context[zmq.Socket[bytes]],
    keys: AgentKeys,
    domain_roles: Mapping[str, str] | None = None,
) -> ThreadAuthenticator:
    """The ZAP handler for every CurveZMQ server socket of `ctx`, in a thread of its own (for a
    server with a blocking loop); start it before the first bind, stop it before ctx.term()."""
    provider = AuthorizedKeys(keys.authorized_keys, Counter(), domain_roles)
    auth = ThreadZapHandler(ctx, provider)
    auth.start()
    # pyzmq looks a ZAP domain up by name ("*" stands only for the empty one)
    for domain in ("*", *(domain_roles or {})):
        auth.configure_curve_callback(domain, credentials_provider=provider)
    return auth


def _address(zap_request: list[bytes]) -> str:
    """The peer's address in a ZAP request (RFC 27: version, id, domain, address, ...)."""
    return zap_request[3].decode(errors="replace") if len(zap_request) > 3 else "?"


class ThreadZapHandler(ThreadAuthenticator):
    """pyzmq's ZAP handler in a thread, telling the key check which address it checks (the
    credentials callback only gets the key), so a refusal is logged with both."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], provider: AuthorizedKeys) -> None:
        super().__init__(ctx)
        self.provider = provider

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.provider.peer = _address(msg)
        await super().handle_zap_message(msg)


class AsyncioZapHandler(AsyncioAuthenticator):
    """The same, on an asyncio loop (the node agent's)."""

    def __init__(self, ctx: zmq.asyncio.Context, provider: AuthorizedKeys) -> None:
        super().__init__(ctx)
        self.provider = provider

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.provider.peer = _address(msg)
        await super().handle_zap_message(msg)


COORDINATOR = "coordinator"  # the name clients of step 02 pin the coordinator's key under


def add_client_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        type=Path,
        default=os.environ.get("ZCL_KEYS"),
        metavar="DIR",
        help="this program's CurveZMQ key folder (id.key_secret, and known_hosts pinning "
        f"'{COORDINATOR}'); without it the connection is plain, for --insecure coordinators "
        "($ZCL_KEYS)",
    )


def client_keys(args: argparse.Namespace) -> ControllerKeys | None:
    if args.keys is None:
        return None
    keys = load_controller_keys(args.keys)
    keys.agent_key(COORDINATOR)  # fail at start, not at the first connection
    return keys
