"""What every program of ours shares on its command line: endpoint options, one-line errors,
exit codes, logging, and binding or connecting with the endpoint named in the error.

Small on purpose: the node agent and the journal collector import it, so it must not drag
anything else in (no process harness, no MDP).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import re
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from zcl.errors import CliError, ZclError

Sock = zmq.Socket[bytes]
Ctx = zmq.Context[Sock]

READY_MARK = " ready on "  # a program logs "<role> ready on <endpoint>" once it can serve
DAEMON_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

_TCP = re.compile(r"^tcp://(\*|[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(\*|\d{1,5})$")

log = logging.getLogger("zcl.cli")  # its module path, also under python -m
HANDSHAKE_S = 5  # a server closes a connection that has not finished its handshake by then


def endpoint(text: str) -> str:
    """argparse type for endpoints: tcp://HOST:PORT (PORT may be * to pick one), ipc://, inproc://."""
    match = _TCP.match(text)
    if match:
        port = match.group(2)
        if port == "*" or 0 < int(port) < 65536:
            return text
    elif text.startswith(("ipc://", "inproc://")) and len(text.split("://", 1)[1]) > 0:
        return text
    raise argparse.ArgumentTypeError(
        f"invalid endpoint {text!r}: expected tcp://HOST:PORT, tcp://HOST:*, ipc://PATH or inproc://NAME"
    )


def positive_int(text: str) -> int:
    """argparse type for counts: a whole number of at least 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type for sizes that may be zero (0 turns a feature off)."""
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
    return value


def seconds(text: str) -> float:
    """argparse type for durations: a finite number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type for durations that must not be zero (a timeout of 0 would fire at once)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr and exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def program_parser(doc: str | None, prog: str | None = None) -> OneLineParser:
    """The parser of a single-role program (a daemon, a client): its docstring as help."""
    return OneLineParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def command_parser(doc: str | None, prog: str | None = None) -> tuple[OneLineParser, Any]:
    """A parser with sub-commands (its docstring as help) and the group to add them to."""
    parser = program_parser(doc, prog)
    commands = parser.add_subparsers(dest="role", required=True, metavar="COMMAND")
    return parser, commands


def add_command(
    commands: Any,
    name: str,
    func: Callable[[argparse.Namespace], int | None],
    help: str,
    **endpoints: str,
) -> argparse.ArgumentParser:
    """Add a sub-command; each keyword becomes an --OPTION taking an endpoint (its default)."""
    command: argparse.ArgumentParser = commands.add_parser(name, help=help)
    for option, default in endpoints.items():
        command.add_argument(f"--{option.replace('_', '-')}", type=endpoint, default=default)
    command.set_defaults(func=func)
    return command


def add_endpoint(
    parser: argparse.ArgumentParser, option: str, env: str, default: str, help: str | None = None
) -> None:
    """An endpoint option whose default can also come from an environment variable."""
    parser.add_argument(
        option,
        type=endpoint,
        default=os.environ.get(env, default),
        help=help or f"default: ${env} or {default}",
    )


def run_main(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, log_format: str = "%(message)s"
) -> int:
    """Parse argv, run the chosen `func`, and map failures to one line and an exit code.

    Tools log bare messages; long-running daemons pass DAEMON_LOG_FORMAT for timestamps.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format=log_format,
        stream=sys.stdout,
    )
    try:
        return int(args.func(args) or 0)
    except (ZclError, zmq.ZMQError) as exc:  # a CliError, a key file, a journal ...
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def reason(exc: zmq.ZMQError) -> str:
    """libzmq's text for an error, without pyzmq's added details."""
    return zmq.strerror(exc.errno) if exc.errno is not None else str(exc)


def bind(sock: Sock, where: str) -> str:
    """Bind and return the real endpoint (the port chosen when `where` ends in :*)."""
    try:
        sock.bind(where)
    except zmq.ZMQError as exc:
        raise CliError(f"cannot bind {where}: {reason(exc)}") from None
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


def connect(sock: Sock, where: str) -> None:
    """Connect, with the endpoint named in the error if libzmq refuses it."""
    try:
        sock.connect(where)
    except zmq.ZMQError as exc:
        raise CliError(f"cannot connect to {where}: {reason(exc)}") from None


def announce_ready(role: str, where: str) -> None:
    """The line a parent process (or a script) waits for before it talks to this program."""
    log.info("%s%s%s", role, READY_MARK, where)


def serve_strangers_briefly(sock: Sock) -> None:
    """A server socket's defence against connections that never authenticate: libzmq gives a
    silent one 30 s to finish its handshake, holding a descriptor all that time; ours get
    HANDSHAKE_S. (Set before bind.)"""
    sock.handshake_ivl = HANDSHAKE_S * 1000


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit, and return it.

    A daemon holds a descriptor per connection; the usual soft limit (1,024, sometimes 256)
    lets a few hundred idle connections lock out the peers that matter. The hard limit is the
    operator's to set (systemd's LimitNOFILE=); this takes what it allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def give_back_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim).

    Memory a library frees stays in the process's heap, so after libzmq let go of something
    large (a flood of subscriptions, say) the resident size would stay at its peak, and the
    next flood could stack on top of it. A no-op where the C library has no malloc_trim.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
