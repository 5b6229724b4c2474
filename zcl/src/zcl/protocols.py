"""cluster_runner's contracts, written down as typing.Protocols, and the plain data they pass.

cluster_runner's code is private; what it expects of a transport is known: an executor per node
(`NodeExecutorProtocol`, today `NodeExecutorSSH` over asyncssh), a journal that records each
result (`AsyncJournalWriterProtocol`), and an operational context that hands both out
(`OperationalContextProtocol`). Both our implementations, SSH (ssh_context.py) and ZeroMQ
(zmq_node_executor.py and friends), satisfy these, so the runner's code does not change when the
transport does. mypy checks that they do (see the `_conforms` lines in each implementation).

Errors are part of the contract too: a caller can tell a command that failed (a result with a
non-zero exit status) from a command that could not be run (`TransportError`) and from one that
ran out of time (`CommandTimeoutError`), whichever transport served it.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Unpack

from zcl.errors import (
    DescriptorError,
    ExecutorError,
    InvalidRequestError,
    OutputLimitError,
    UnknownNodeError,
)
from zcl.run_options import (
    ENV_NAME,
    RunKeywords,
    RunOptions,
)

if TYPE_CHECKING:
    from zcl.output_stream import CommandOutput
    from zcl.retry import RetryPolicy

Stream = Literal["stdout", "stderr"]
OutputCallback = Callable[[Stream, bytes], None]
# A transfer's progress, file by file: (the file's path on the node, bytes moved, its size),
# called as each piece lands, as asyncssh's progress_handler is.
Progress = Callable[[str, int, int], None]
Transport = Literal["ssh", "zmq"]


# -- results and errors ------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    """What a remote command left behind. Output is bytes: commands may print anything.

    `exit_status` follows subprocess: negative when a signal ended the command (-9 = SIGKILL).
    `truncated` is set when the output cap cut the output short (stdout and stderr together
    kept at most `max_output_bytes`); only a caller who asked `truncate=True` gets such a
    result, the others get OutputLimitError carrying it.
    """

    node_id: str
    command: str
    exit_status: int
    stdout: bytes
    stderr: bytes
    duration_s: float
    truncated: bool = False
    transport: Transport | None = None  # which transport served it (the fallback executor mixes)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def text(self, stream: Stream = "stdout") -> str:
        return (self.stdout if stream == "stdout" else self.stderr).decode(errors="replace")


def kept_output(result: CommandResult, limit: int, truncate: bool) -> CommandResult:
    """The result a caller gets for output that may have hit its cap, on either transport."""
    if not result.truncated or truncate:
        return result
    raise OutputLimitError(
        result.node_id,
        f"{result.command!r} wrote more than {limit} bytes of output; the first {limit} are in "
        "this error's result (max_output_bytes= keeps more, truncate=True keeps them without "
        "an error)",
        result,
    )


# -- what describes a cluster ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeDescriptor:
    """One node as cluster_runner knows it. `labels` carry placement facts, e.g. {"leaf": "L1"}.

    `transport` picks how this node is driven (the canary switch of the migration plan).
    """

    node_id: str
    host: str
    ssh_port: int = 22
    agent_port: int = 5560
    ssh_user: str | None = None
    ssh_key_path: str | None = None
    ssh_known_hosts_path: str | None = None  # None: the user's ~/.ssh/known_hosts, as ssh does
    # Believe any host key: only for hosts whose keys are new at every start (a lab). Named so
    # that it cannot be switched on by leaving a field out.
    ssh_skip_host_key_check: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    transport: Transport = "zmq"

    @property
    def agent_endpoint(self) -> str:
        return f"tcp://{self.host}:{self.agent_port}"


@dataclass(frozen=True)
class ClusterDescriptor:
    """The nodes of a run, and where the controller's CurveZMQ keys live (see keys.py)."""

    nodes: tuple[NodeDescriptor, ...]
    zmq_keys_dir: str | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:  # one id, one node: a second would shadow the first
            if node.node_id in seen:
                raise DescriptorError(f"node {node.node_id!r} is in the descriptor twice")
            seen.add(node.node_id)

    def node(self, node_id: str) -> NodeDescriptor:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise UnknownNodeError(node_id, f"no node {node_id!r} in the cluster descriptor")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterDescriptor:
        """From the JSON form (a list of node objects and zmq_keys_dir); DescriptorError names
        the first field that is unknown, missing or of the wrong type."""
        if not isinstance(data, Mapping):
            raise DescriptorError("the descriptor must be a JSON object")
        _known(data, {"nodes", "zmq_keys_dir"}, "")
        nodes = data.get("nodes")
        if not isinstance(nodes, list):
            raise DescriptorError("'nodes' must be a list of node objects")
        keys_dir = data.get("zmq_keys_dir")
        if keys_dir is not None and not isinstance(keys_dir, str):
            raise DescriptorError("zmq_keys_dir must be a string (a folder)")
        return cls(
            nodes=tuple(_node(node, f"nodes[{n}]") for n, node in enumerate(nodes)),
            zmq_keys_dir=keys_dir,
        )

    @classmethod
    def load(cls, path: Path) -> ClusterDescriptor:
        try:
            text = path.read_text()
        except OSError as exc:
            raise DescriptorError(f"{path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DescriptorError(f"{path}: not JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except DescriptorError as exc:
            raise DescriptorError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [dict(asdict(n), labels=dict(n.labels)) for n in self.nodes],
            "zmq_keys_dir": self.zmq_keys_dir,
        }


@dataclass(frozen=True)
class SystemConfig:
    """A node's hardware as a perf test needs it."""

    hostname: str
    cpus: int
    memory_bytes: int
    gpus: tuple[str, ...] = ()
    nics: tuple[str, ...] = ()
    numa_nodes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SystemConfig:
        return cls(
            hostname=str(data["hostname"]),
            cpus=int(data["cpus"]),
            memory_bytes=int(data["memory_bytes"]),
            gpus=tuple(data.get("gpus", ())),
            nics=tuple(data.get("nics", ())),
            numa_nodes=int(data.get("numa_nodes", 1)),
        )


# What every command meets, whichever transport runs it (protocol-mapping.md, "The execution
# environment"): the variables of a login as its user and no others (not the agent's own, not
# sshd's), this PATH, this locale, this umask, and the home folder as its working folder.
COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMMAND_LANG = "C.UTF-8"  # built into glibc 2.35+, so present on every node
COMMAND_UMASK = "022"


def login_environment(user: str, home: str, shell: str) -> dict[str, str]:
    """The whole environment a command starts with (the caller's `env` is added by its script)."""
    return {
        "HOME": home,
        "USER": user,
        "LOGNAME": user,
        "SHELL": shell,
        "PATH": COMMAND_PATH,
        "LANG": COMMAND_LANG,
    }


def shell_script(command: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """The command with its environment, umask and working directory as shell code.

    SSH has no portable way to pass either (sshd accepts only the variables its AcceptEnv
    lists), so the SSH executor sends this script, and the node agent runs the same script, so
    both transports fail the same way for a missing directory or a bad variable name. With no
    `cwd` the command starts in its user's home folder, as an SSH login does (or in / when
    there is none). The umask and the folder share the command's first line, so the shell's
    messages name the command's own line numbers.
    """
    bad = [name for name in (env or {}) if not ENV_NAME.match(name)]
    if bad:  # a name is pasted into shell code unquoted: only plain names are safe
        raise ValueError(f"not a valid environment variable name: {bad[0]!r}")
    lines = [f"export {name}={shlex.quote(value)}" for name, value in (env or {}).items()]
    if cwd is not None:
        folder = f"cd -- {shlex.quote(cwd)} || exit 1"
    else:
        folder = 'cd -- "$HOME" 2>/dev/null || cd /'
    # OLDPWD would name the folder the shell happened to start in (the agent's): a login has none
    return "\n".join([*lines, f"umask {COMMAND_UMASK}; {folder}; unset OLDPWD; {command}"])


COMMAND_MARKER = "ZCL_COMMAND_ID"  # exported to every command, so a kill can find its children


_NODE_FIELDS: dict[str, tuple[type, ...]] = {
    "node_id": (str,),
    "host": (str,),
    "ssh_port": (int,),
    "agent_port": (int,),
    "ssh_user": (str, type(None)),
    "ssh_key_path": (str, type(None)),
    "ssh_known_hosts_path": (str, type(None)),
    "ssh_skip_host_key_check": (bool,),
    "labels": (dict,),
    "transport": (str,),
}


def _known(data: Mapping[str, Any], fields: set[str], where: str) -> None:
    for name in data:
        if name not in fields:
            raise DescriptorError(f"{where or 'the descriptor'}: unknown field {name!r}")


def _node(data: Any, where: str) -> NodeDescriptor:
    if not isinstance(data, Mapping):
        raise DescriptorError(f"{where}: a node must be a JSON object")
    _known(data, set(_NODE_FIELDS), where)
    for name in ("node_id", "host"):
        if name not in data:
            raise DescriptorError(f"{where}: missing field {name!r}")
    for name, value in data.items():
        kinds = _NODE_FIELDS[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise DescriptorError(f"{where}.{name}: expected {wanted}, got {value!r}")
    if data.get("transport", "zmq") not in ("ssh", "zmq"):
        raise DescriptorError(f"{where}.transport: 'ssh' or 'zmq', got {data['transport']!r}")
    for name in ("ssh_port", "agent_port"):
        if name in data and not 1 <= data[name] <= 65535:
            raise DescriptorError(f"{where}.{name}: a TCP port (1 to 65535), got {data[name]}")
    labels = data.get("labels", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise DescriptorError(f"{where}.labels: names and values must be strings")
    return NodeDescriptor(**data)


@dataclass(frozen=True)
class RunRequest:
    """One run() call: the command, its checked options (run_options.py) and the shell script
    both transports send (shell_script)."""

    command: str
    script: str
    options: RunOptions

    @classmethod
    def of(cls, node_id: str, command: str, options: RunOptions) -> RunRequest:
        """Raises InvalidRequestError, the same on both transports, before anything is sent."""
        if not isinstance(command, str):
            raise InvalidRequestError(node_id, f"command must be a string, got {command!r}")
        if "\x00" in command:  # no shell and no argv can carry one
            raise InvalidRequestError(node_id, "a command, cwd or env value cannot hold a NUL")
        return cls(command, shell_script(command, options.env, options.cwd), options)


# Bits a copied file never carries, either way: a set-id or sticky bit, or others' write. A put
# must not hand the node's user a setuid file made by a controller (or a get the controller's
# user one made by a node), whatever the transport; the agent strips them from what it is sent.
UNSAFE_MODE_BITS = 0o7002


def safe_mode(mode: int | None) -> int | None:
    return None if mode is None else mode & 0o7777 & ~UNSAFE_MODE_BITS


def unsafe_modes(local: Path) -> list[tuple[Path, int]]:
    """Each file or folder at or below `local` (no link followed) whose mode has an unsafe
    bit, with the mode it should have instead."""
    paths = [local]
    if local.is_dir() and not local.is_symlink():
        for folder, folders, files in os.walk(local):
            paths.extend(Path(folder, name) for name in folders + files)
    modes = []
    for path in paths:
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & UNSAFE_MODE_BITS:
            modes.append((path, stat.S_IMODE(info.st_mode) & ~UNSAFE_MODE_BITS))
    return modes


def checked_put(node_id: str, local_path: Path, mode: int | None) -> bool:
    """put_file's arguments, validated alike on both transports: is the local path a folder?"""
    if mode is not None and (
        isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777
    ):
        raise InvalidRequestError(
            node_id, f"mode must be permission bits (0 to 0o7777), got {mode!r}"
        )
    if mode is not None and mode & UNSAFE_MODE_BITS:
        raise InvalidRequestError(
            node_id, f"mode {mode:#o} has a set-id, sticky or others' write bit (0o7002)"
        )
    try:
        is_folder = local_path.is_dir()
        if not is_folder:
            local_path.stat()
    except OSError as exc:
        raise InvalidRequestError(node_id, f"{local_path}: {exc.strerror}") from None
    if is_folder and mode is not None:
        raise InvalidRequestError(
            node_id, "mode= is for one file; preserve_mode=True keeps a folder's modes"
        )
    return is_folder


def ran_over(command: str, timeout_s: float | None) -> str:
    """The one message of a CommandTimeoutError, whichever transport ran the command."""
    return f"{command!r} ran over {timeout_s:g} s and was killed, with everything it started"


# -- the contracts -----------------------------------------------------------------------------


class NodeExecutorProtocol(Protocol):
    """Runs commands and moves files on one node."""

    node_id: str

    async def run(
        self,
        command: str,
        *,
        on_output: OutputCallback | None = None,
        retry: RetryPolicy | None = None,
        **options: Unpack[RunKeywords],
    ) -> CommandResult:
        """Run `command` through the node's /bin/sh, with the options RunOptions describes
        (run_options.py); raise CommandTimeoutError after `timeout_s`. `on_output` is handed
        each chunk of output as it comes; `retry` runs it again after the failures the policy
        names (retry.py)."""
        ...

    def stream(self, command: str, **options: Unpack[RunKeywords]) -> CommandOutput:
        """`run`, with the output as an async iterator that slows the command when the loop
        falls behind (output_stream.py); leaving the loop early kills the command."""
        ...

    async def put_file(
        self,
        local_path: Path,
        remote_path: str,
        *,
        mode: int | None = None,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """Copy a file, or a folder with everything below it, to the node, in pieces (no
        size is held in memory whole). The copy gets `mode`, or with `preserve_mode` the
        local permission bits; else what the node's umask leaves, as SFTP and cp give."""
        ...

    async def get_file(
        self,
        remote_path: str,
        local_path: Path,
        *,
        preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """Copy a file, or a folder with everything below it, from the node; `progress` as
        for put_file."""
        ...

    async def system_config(self) -> SystemConfig: ...

    async def close(self) -> None: ...


class AsyncJournalWriterProtocol(Protocol):
    """Records results, one JSON object per record.

    `write` returns once the writer has taken the record: it may still be in memory, or on its
    way to a collector. `flush` returns once every record written before it is durable (fsynced
    to the file, or acknowledged by the collector after its fsync) and raises if one cannot be;
    `close` flushes, then lets go. Call `flush` where a record must survive a crash.
    """

    async def write(self, record: Mapping[str, Any]) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class OperationalContextProtocol(Protocol):
    """What a scheduled run gets from the transport: nodes, their executors and a journal."""

    @property
    def nodes(self) -> Sequence[NodeDescriptor]: ...

    def journal(self) -> AsyncJournalWriterProtocol: ...

    def executor(self, node_id: str) -> NodeExecutorProtocol: ...

    async def system_config(self, node_id: str) -> SystemConfig: ...

    async def run_group(
        self,
        node_ids: Sequence[str],
        command: str,
        *,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
        **options: Unpack[RunKeywords],
    ) -> dict[str, CommandResult | ExecutorError]:
        """The command on each node: its result or its error, in the order asked."""
        ...
