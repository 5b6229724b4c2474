"""What may be tuned of each transport's executors, one frozen value per executor (asyncssh's
options object): a misspelled name is a TypeError where the options are made, a bad value a
ConfigurationError, both before any connection.

    options = ZmqExecutorOptions(agent_silence_s=5.0)
    async with build_zmq_context(descriptor, None, journal, options=options) as context: ...

Apart from the executors, so that SshExecutorOptions is importable without asyncssh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zcl.errors import ConfigurationError
from zcl.run_options import MAX_KILL_GRACE_S

MiB = 1024 * 1024


def _checked(options: object) -> None:
    """Each field as its annotation says: a flag True or False, a count a whole number of at
    least 1, a duration a finite number above 0 (ConfigurationError names the field)."""
    for name, value in vars(options).items():
        kind = options.__dataclass_fields__[name].type  # type: ignore[attr-defined]
        if kind == "bool":
            fine = isinstance(value, bool)
            wanted = "True or False"
        elif kind == "int":
            fine = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            wanted = "a whole number of at least 1"
        else:
            fine = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            )
            wanted = "a positive, finite number"
        if not fine:
            raise ConfigurationError("", f"{name} must be {wanted}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ZmqExecutorOptions:
    """`heartbeat_s`: how often a waiting executor pings its agent. `agent_silence_s`: the
    least silence after which the agent counts as gone (its learned rhythm may allow more).
    `grace_s`: how long past a command's timeout (and kill grace) the answer may take.
    `max_message_bytes`: the largest message accepted from the agent. `max_in_flight`: the
    requests sent at once; more wait in order."""

    heartbeat_s: float = 0.25
    agent_silence_s: float = 2.0
    grace_s: float = 5.0
    max_message_bytes: int = 96 * MiB
    max_in_flight: int = 64

    def __post_init__(self) -> None:
        _checked(self)


@dataclass(frozen=True, kw_only=True)
class SshExecutorOptions:
    """`persistent`: one connection per node and user, commands on channels of it (else a
    fresh connection per command, as a plain `ssh host cmd` is). `connect_timeout_s`: how long
    a connection may take. `max_kill_grace_s`: the SIGTERM-to-SIGKILL a request may ask, as
    the agent's --max-kill-grace holds it on the other transport."""

    persistent: bool = True
    connect_timeout_s: float = 10.0
    max_kill_grace_s: float = MAX_KILL_GRACE_S

    def __post_init__(self) -> None:
        _checked(self)
