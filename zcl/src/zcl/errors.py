"""Every error zcl raises on purpose, under one root: `except zcl.ZclError` catches them all.

The families, and what each tells a caller:

    ZclError
    ├── ExecutorError            a command could not be run to completion on `node_id`
    │   ├── TransportError       the node could not be reached, or the link broke; `may_have_run`
    │   │   ├── CircuitOpenError     recent failures opened the node's circuit: failing fast
    │   │   └── AgentDrainingError   the agent is stopping and refused it before starting it
    │   ├── CommandTimeoutError  it ran past its timeout and was killed (also a TimeoutError)
    │   ├── CommandFailedError   it exited non-zero and the caller asked check=True; `result`
    │   ├── OutputLimitError     it wrote more than its cap; `result` holds what was kept
    │   ├── InvalidRequestError  the call's arguments are wrong; nothing was sent (a ValueError)
    │   │   └── RequestTooLargeError  over a limit of the node; nothing was sent
    │   ├── ConfigurationError   the executor, context or an option cannot be used as given
    │   │   └── UnknownNodeError     the node is not in this run (also a KeyError)
    │   └── RemoteError          the node refused the request (not allowed, busy, a bad path)
    ├── DescriptorError          a cluster descriptor that cannot be used (a ValueError)
    ├── KeyFileError             a key file missing, malformed, unsafe, or about to be overwritten
    ├── JournalError             a journal cannot take, keep or deliver records
    │   ├── JournalRecordError       this record can never be written (a ValueError)
    │   └── JournalUnavailableError  the journal did not take or acknowledge records in time
    ├── RecordError              a line that is not a journal record (a ValueError)
    ├── WireError                a message that breaks its protocol (a ValueError)
    ├── ProbeError               a system probe's output is not what the script prints
    └── CliError                 a failure a command-line user can act on (zcl.cli)

The second bases (ValueError, KeyError, TimeoutError) are what the same failures raised before
they had a family, so code written against those still catches them. Misuse that no input can
cause (a stream's result read before its end, a value of the wrong type where a type checker
would have said so) raises Python's own RuntimeError or TypeError, as the standard library does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zcl.protocols import CommandResult


class ZclError(Exception):
    """The root of every error zcl raises on purpose."""


# -- running commands ---------------------------------------------------------------------------


class ExecutorError(ZclError):
    """The command could not be run to completion on `node_id`; the message says why."""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(f"{node_id}: {message}" if node_id else message)
        self.node_id = node_id  # "" where no node is concerned yet (RunOptions made alone)
        self.message = message


class TransportError(ExecutorError):
    """The node could not be reached, or the connection broke while the command ran.

    `may_have_run` is False only when the request provably never reached the node (no
    connection was ever made, the key was refused, the circuit is open, the agent refused it
    while draining): then another transport may run it without risking a second copy."""

    def __init__(self, node_id: str, message: str, *, may_have_run: bool = True) -> None:
        super().__init__(node_id, message)
        self.may_have_run = may_have_run


class CircuitOpenError(TransportError):
    """Recent transport failures opened the node's circuit: failing fast instead of waiting."""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(node_id, message, may_have_run=False)


class AgentDrainingError(TransportError):
    """The node's agent is stopping and refused the command before starting it: another
    transport may run it (the fallback does), and it will not have run twice."""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(node_id, message, may_have_run=False)


class InvalidRequestError(ExecutorError, ValueError):
    """The call's arguments are wrong (a variable name, a timeout); nothing was sent. Also a
    ValueError, which is what a bad variable name raised over SSH before."""


class ConfigurationError(ExecutorError, ValueError):
    """The executor or context cannot be used as configured: no pinned key for the node, an
    option out of range (no node named then). Also a ValueError, which options raised before."""


class UnknownNodeError(ConfigurationError, KeyError):
    """The node is not in this run (filtered out, or not in the descriptor). Also a KeyError,
    which is what it was before it was an ExecutorError."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


class RemoteError(ExecutorError):
    """The node refused the request: not allowed, too busy, a bad path, shutting down."""


class RequestTooLargeError(InvalidRequestError):
    """The request is over a limit of the node (named in the message: its stdin over the
    agent's message limit, a file over its file limit, an output cap above its own); refused
    before anything was sent, so nothing ran."""


class OutputLimitError(ExecutorError):
    """The command wrote more output than its cap and the caller did not ask for truncation.
    It ran to its end; `result` holds its exit status and the output kept (truncated=True)."""

    def __init__(self, node_id: str, message: str, result: CommandResult) -> None:
        super().__init__(node_id, message)
        self.result = result


class CommandFailedError(ExecutorError):
    """The command ran to its end and exited non-zero, and the caller asked `check=True`
    (asyncssh's ProcessError, Fabric's UnexpectedExit); `result` holds its exit status and
    output. Without `check` a non-zero exit is a result, not an error."""

    def __init__(self, node_id: str, message: str, result: CommandResult) -> None:
        super().__init__(node_id, message)
        self.result = result


class CommandTimeoutError(ExecutorError, TimeoutError):
    """The command ran longer than its timeout and was killed, with everything it started.
    `stdout` and `stderr` hold what it wrote before (within its output cap), as asyncssh's
    TimeoutError does: often the best clue to where it hung."""

    def __init__(
        self, node_id: str, message: str, *, stdout: bytes = b"", stderr: bytes = b""
    ) -> None:
        super().__init__(node_id, message)
        self.stdout, self.stderr = stdout, stderr


# -- describing a cluster, and its keys ---------------------------------------------------------


class DescriptorError(ZclError, ValueError):
    """A cluster descriptor that cannot be used; the message names the field."""


class KeyFileError(ZclError):
    """A key file that is missing, malformed, or would be overwritten."""


# -- journals -----------------------------------------------------------------------------------


class JournalError(ZclError, RuntimeError):
    """A journal cannot take, keep or deliver records; the message says which and why."""


class JournalRecordError(JournalError, ValueError):
    """This record can never be written (not JSON, a bad record_id, too large): refused at
    write(), the same by every writer and by the collector, before anything is kept."""


class JournalUnavailableError(JournalError):
    """The journal did not take or acknowledge records within the wait allowed (a collector
    down, refusing our key, or frozen); what was written before is still held for resending."""


class RecordError(ZclError, ValueError):
    """A line that is not a journal record; `kind` is a short label for the counters."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


# -- what peers send ----------------------------------------------------------------------------


class WireError(ZclError, ValueError):
    """A message that breaks its protocol; `kind` is a short label for the drop counters."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class ProbeError(ZclError, ValueError):
    """The probe's output is not what the script prints."""


class CliError(ZclError):
    """A failure the user can act on; shown as one line, never as a traceback."""
