"""CurveZMQ keys laid out the way SSH users already know them.

    KEYDIR/nodes/NODE/host.key, host.key_secret    the agent's key pair    (sshd's host key)
    KEYDIR/nodes/NODE/authorized_keys              controllers it accepts  (authorized_keys)
    KEYDIR/controllers/NAME/id.key, id.key_secret  a controller's key pair (~/.ssh/id_*)
    KEYDIR/controllers/NAME/known_hosts            node keys it pins       (known_hosts)

Copy nodes/NODE/ to that node and controllers/NAME/ to the machine that runs cluster_runner;
secret files are written 0600. authorized_keys holds one Z85 public key per line followed by a
name; known_hosts holds "NODE KEY" per line. The agent rereads authorized_keys when it changes,
so a key is rotated without restarting anything:

    python -m zcl.keys generate KEYDIR --nodes node1 node2 --controllers runner
    python -m zcl.keys add-controller KEYDIR runner-2026   # new key, trusted everywhere
    python -m zcl.keys revoke-controller KEYDIR runner     # old key refused from now on
    python -m zcl.keys revoke-controller KEYDIR runner --on node2   # on one node only
    python -m zcl.keys set-roles KEYDIR worker1 worker --on coordinator  # only a worker
    python -m zcl.keys show KEYDIR
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import zmq.auth

from zcl import cli
from zcl.curve import (
    ROLES,
    AgentKeys,
    AuthorizedKeys,
    ControllerKeys,
    check_folders_safe,
    key_pair,
    load_agent_keys,
    load_controller_keys,
    read_authorized_keys,
    read_known_hosts,
)
from zcl.errors import KeyFileError

__all__ = [  # the readers live in zcl.curve (step 02 uses them); found here too
    "AgentKeys",
    "AuthorizedKeys",
    "ControllerKeys",
    "KeyFileError",
    "add_controller",
    "add_node",
    "controller_dir",
    "generate",
    "load_agent_keys",
    "load_controller_keys",
    "main",
    "node_dir",
    "read_authorized_keys",
    "read_known_hosts",
    "revoke_controller",
    "set_roles",
]
log = logging.getLogger("zcl.keys")  # its module path, also under python -m


def _new_pair(folder: Path, stem: str) -> bytes:
    if (folder / f"{stem}.key_secret").exists():
        raise KeyFileError(f"{folder / stem}.key_secret exists; refusing to overwrite a key")
    check_folders_safe(folder)  # a folder another user controls: they could swap the files
    _make_folders(folder)
    # The secret is private from the moment it exists: created under a umask that leaves no
    # bit for group or others, rather than made readable and chmodded a moment later.
    before = os.umask(0o077)
    try:
        public_file, _ = zmq.auth.create_certificates(folder, stem)
    finally:
        os.umask(before)
    Path(public_file).chmod(0o644)  # public by nature
    return key_pair(folder, stem)[0]


def _make_folders(folder: Path) -> None:
    """The missing folders down to `folder`, 0755 whatever the umask: with umask 0 they were
    made 0777, and every daemon then refused them (anyone could swap the keys below)."""
    missing = [folder, *folder.parents]
    for path in reversed(missing):
        if not path.exists():
            path.mkdir(mode=0o755)
            path.chmod(0o755)  # mkdir's mode passes through the umask


def node_dir(keydir: Path, node_id: str) -> Path:
    return keydir / "nodes" / node_id


def controller_dir(keydir: Path, name: str) -> Path:
    return keydir / "controllers" / name


def _replace(path: Path, text: str) -> None:
    """Rewrite a file whole, never in place: an agent reading authorized_keys at that moment
    sees the old file or the new one, not an empty or half-written one (which would refuse
    every controller)."""
    check_folders_safe(path.parent)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, path.stat().st_mode & 0o777)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _append(path: Path, line: str) -> None:
    check_folders_safe(path.parent)
    with path.open("a") as out:
        out.write(line + "\n")


def _nodes(keydir: Path) -> list[str]:
    return sorted(p.name for p in (keydir / "nodes").glob("*") if p.is_dir())


def _controllers(keydir: Path) -> list[str]:
    return sorted(p.name for p in (keydir / "controllers").glob("*") if p.is_dir())


def _trust(keydir: Path, node_id: str, controller: str) -> None:
    """The node accepts the controller's key; the controller pins the node's host key."""
    host_public = key_pair(node_dir(keydir, node_id), "host")[0].decode()
    controller_public = key_pair(controller_dir(keydir, controller), "id")[0].decode()
    _append(node_dir(keydir, node_id) / "authorized_keys", f"{controller_public} {controller}")
    _append(controller_dir(keydir, controller) / "known_hosts", f"{node_id} {host_public}")


def add_node(keydir: Path, node_id: str) -> bytes:
    """A host key for a new node, trusted by every controller, accepting every controller."""
    public = _new_pair(node_dir(keydir, node_id), "host")
    (node_dir(keydir, node_id) / "authorized_keys").touch(mode=0o644)  # whatever the umask
    (node_dir(keydir, node_id) / "authorized_keys").chmod(0o644)
    for name in _controllers(keydir):
        _trust(keydir, node_id, name)
    return public


def add_controller(keydir: Path, name: str) -> bytes:
    """A key pair for a new controller, authorized on every node, pinning every node's key."""
    public = _new_pair(controller_dir(keydir, name), "id")
    (controller_dir(keydir, name) / "known_hosts").touch()
    for node_id in _nodes(keydir):
        _trust(keydir, node_id, name)
    return public


def revoke_controller(keydir: Path, name: str, on: Sequence[str] | None = None) -> int:
    """Remove a controller's key from the authorized_keys of the nodes `on` names (every node
    when None); returns the nodes changed. A node `on` names that KEYDIR lacks is an error,
    raised before any file changes."""
    public = key_pair(controller_dir(keydir, name), "id")[0].decode()
    known = _nodes(keydir)
    missing = [node_id for node_id in on or () if node_id not in known]
    if missing:
        raise KeyFileError(f"no node {missing[0]!r} in {keydir} (it has: {', '.join(known)})")
    changed = 0
    for node_id in known if on is None else [n for n in known if n in on]:
        path = node_dir(keydir, node_id) / "authorized_keys"
        lines = path.read_text().splitlines()
        kept = [line for line in lines if not line.startswith(public)]
        if kept != lines:
            _replace(path, "".join(f"{line}\n" for line in kept))
            changed += 1
    return changed


def set_roles(keydir: Path, name: str, roles: Sequence[str], on: str) -> None:
    """What a controller's key may do on node `on` (the coordinator's: client, worker,
    monitor): its line in that node's authorized_keys gets `roles=...`; no roles: any."""
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise KeyFileError(
            f"unknown role {', '.join(unknown)} (roles are {', '.join(sorted(ROLES))})"
        )
    public = key_pair(controller_dir(keydir, name), "id")[0].decode()
    path = node_dir(keydir, on) / "authorized_keys"
    if not path.exists():
        raise KeyFileError(f"no node {on!r} in {keydir} (it has: {', '.join(_nodes(keydir))})")
    lines = path.read_text().splitlines()
    given = f" roles={','.join(sorted(set(roles)))}" if roles else ""
    changed = [
        " ".join(w for w in line.split() if not w.startswith("roles=")) + given
        if line.startswith(public) else line
        for line in lines
    ]  # fmt: skip
    if changed == lines and not any(line.startswith(public) for line in lines):
        raise KeyFileError(f"{on} does not accept {name!r}: nothing to give roles to")
    _replace(path, "".join(f"{line}\n" for line in changed))


def generate(keydir: Path, nodes: Sequence[str], controllers: Sequence[str]) -> None:
    for name in controllers:
        add_controller(keydir, name)
    for node_id in nodes:
        add_node(keydir, node_id)


def _cmd_generate(args: argparse.Namespace) -> int:
    generate(args.keydir, args.nodes, args.controllers)
    print(f"keys for {len(args.nodes)} node(s) and {len(args.controllers)} controller(s)")
    return _cmd_show(args)


def _cmd_add_controller(args: argparse.Namespace) -> int:
    public = add_controller(args.keydir, args.name)
    print(f"{args.name} {public.decode()} authorized on {len(_nodes(args.keydir))} node(s)")
    return 0


def _cmd_revoke_controller(args: argparse.Namespace) -> int:
    changed = revoke_controller(args.keydir, args.name, args.on)
    where = ", ".join(args.on) if args.on else "every node"
    print(f"{args.name} removed from authorized_keys on {changed} node(s) ({where})")
    return 0


def _cmd_set_roles(args: argparse.Namespace) -> int:
    set_roles(args.keydir, args.name, args.roles, args.on)
    print(f"{args.name} may act on {args.on} as {', '.join(args.roles) or 'anything'}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    for node_id in _nodes(args.keydir):
        folder = node_dir(args.keydir, node_id)
        accepted = read_authorized_keys(folder / "authorized_keys")
        public = key_pair(folder, "host")[0].decode()
        print(f"node {node_id}: host key {public}, accepts {', '.join(accepted.values()) or '-'}")
    for name in _controllers(args.keydir):
        keys = load_controller_keys(controller_dir(args.keydir, name))
        pinned = ", ".join(keys.known_hosts) or "-"
        print(f"controller {name}: key {keys.public.decode()}, pins {pinned}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, verbs = cli.command_parser(__doc__, prog="zcl-keys")
    gen = cli.add_command(verbs, "generate", _cmd_generate, "new keys for nodes and controllers")
    gen.add_argument("keydir", type=Path)
    gen.add_argument("--nodes", nargs="+", default=[], metavar="NODE")
    gen.add_argument("--controllers", nargs="+", default=["controller"], metavar="NAME")
    add = cli.add_command(verbs, "add-controller", _cmd_add_controller, "a new controller key")
    revoke = cli.add_command(verbs, "revoke-controller", _cmd_revoke_controller, "distrust a key")
    roles = cli.add_command(
        verbs, "set-roles", _cmd_set_roles, "what a key may do on a coordinator node"
    )
    roles.add_argument("keydir", type=Path)
    roles.add_argument("name")
    roles.add_argument("roles", nargs="*", help="client, worker, monitor (none: any)")
    roles.add_argument("--on", required=True, help="the node (the coordinator) whose file")
    for verb in (add, revoke):
        verb.add_argument("keydir", type=Path)
        verb.add_argument("name")
    revoke.add_argument(
        "--on",
        action="append",
        metavar="NODE",
        help="only on this node (repeatable; default: every node); push that node's "
        "authorized_keys and its agent takes the change in, without a restart",
    )
    show = cli.add_command(verbs, "show", _cmd_show, "list nodes, controllers and trust")
    show.add_argument("keydir", type=Path)
    return cli.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
