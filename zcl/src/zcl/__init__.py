"""zcl: cluster_runner's transport over ZeroMQ, with SSH as the fallback.

Everything a runner uses is importable from here; the modules behind these names are the
product's parts (see the package's README for the map), and their other names are internal.

    from zcl import ClusterDescriptor, FileJournalWriter, build_zmq_context

    descriptor = ClusterDescriptor.load(Path("cluster.json"))
    async with build_zmq_context(descriptor, None, FileJournalWriter(path)) as context:
        result = await context.executor("node1").run("nvidia-smi -L", timeout_s=30)

The contract is the three protocols (`NodeExecutorProtocol`, `OperationalContextProtocol`,
`AsyncJournalWriterProtocol`) and the data they pass; every error zcl raises on purpose is a
`ZclError` (zcl.errors draws the tree). zcl logs under the "zcl" logger and, as a library
should, prints nothing unless the application configures logging.

Each name's module is imported the first time the name is looked up (PEP 562), so that the
node agent, which shares the package, does not load the controller side at every start, and
`import zcl` needs only pyzmq and msgpack: the SSH side (`build_ssh_context`,
`NodeExecutorSSH`) needs the ssh extra (asyncssh).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zcl.circuit_breaker import CircuitBreaker
    from zcl.errors import (
        AgentDrainingError,
        CircuitOpenError,
        CliError,
        CommandFailedError,
        CommandTimeoutError,
        ConfigurationError,
        DescriptorError,
        ExecutorError,
        InvalidRequestError,
        JournalError,
        JournalRecordError,
        JournalUnavailableError,
        KeyFileError,
        OutputLimitError,
        ProbeError,
        RecordError,
        RemoteError,
        RequestTooLargeError,
        TransportError,
        UnknownNodeError,
        WireError,
        ZclError,
    )
    from zcl.executor_base import NodeExecutorBase, Sink
    from zcl.executor_options import SshExecutorOptions, ZmqExecutorOptions
    from zcl.fallback import FallbackExecutor
    from zcl.journal import FileJournalWriter, read_journal
    from zcl.keys import AgentKeys, ControllerKeys, load_agent_keys, load_controller_keys
    from zcl.operational_context import OperationalContext
    from zcl.output_stream import CommandOutput
    from zcl.protocols import (
        AsyncJournalWriterProtocol,
        ClusterDescriptor,
        CommandResult,
        NodeDescriptor,
        NodeExecutorProtocol,
        OperationalContextProtocol,
        OutputCallback,
        Progress,
        RunRequest,
        Stream,
        SystemConfig,
    )
    from zcl.retry import RetryPolicy
    from zcl.run_options import RunKeywords, RunOptions

    # Looked up, never star-imported: they need the ssh extra (see __all__).
    from zcl.ssh_context import NodeExecutorSSH as NodeExecutorSSH
    from zcl.ssh_context import build_ssh_context as build_ssh_context
    from zcl.zmq_journal import ZmqJournalWriter
    from zcl.zmq_node_executor import ZmqNodeExecutor
    from zcl.zmq_operational_context import build_zmq_context

__version__ = "0.2.0"

# A library's loggers stay quiet unless the application configures logging.
logging.getLogger("zcl").addHandler(logging.NullHandler())

_HOME = {  # each public name, and the module that defines it
    "AgentDrainingError": "zcl.errors",
    "AgentKeys": "zcl.keys",
    "AsyncJournalWriterProtocol": "zcl.protocols",
    "CircuitBreaker": "zcl.circuit_breaker",
    "CircuitOpenError": "zcl.errors",
    "CliError": "zcl.errors",
    "ClusterDescriptor": "zcl.protocols",
    "CommandOutput": "zcl.output_stream",
    "CommandResult": "zcl.protocols",
    "CommandTimeoutError": "zcl.errors",
    "ConfigurationError": "zcl.errors",
    "ControllerKeys": "zcl.keys",
    "DescriptorError": "zcl.errors",
    "ExecutorError": "zcl.errors",
    "FallbackExecutor": "zcl.fallback",
    "FileJournalWriter": "zcl.journal",
    "InvalidRequestError": "zcl.errors",
    "JournalError": "zcl.errors",
    "JournalRecordError": "zcl.errors",
    "JournalUnavailableError": "zcl.errors",
    "KeyFileError": "zcl.errors",
    "NodeDescriptor": "zcl.protocols",
    "NodeExecutorProtocol": "zcl.protocols",
    "NodeExecutorSSH": "zcl.ssh_context",
    "OperationalContext": "zcl.operational_context",
    "OperationalContextProtocol": "zcl.protocols",
    "OutputCallback": "zcl.protocols",
    "OutputLimitError": "zcl.errors",
    "ProbeError": "zcl.errors",
    "RecordError": "zcl.errors",
    "RemoteError": "zcl.errors",
    "RequestTooLargeError": "zcl.errors",
    "RetryPolicy": "zcl.retry",
    "Stream": "zcl.protocols",
    "SystemConfig": "zcl.protocols",
    "TransportError": "zcl.errors",
    "UnknownNodeError": "zcl.errors",
    "WireError": "zcl.errors",
    "ZclError": "zcl.errors",
    "ZmqExecutorOptions": "zcl.executor_options",
    "SshExecutorOptions": "zcl.executor_options",
    "RunOptions": "zcl.run_options",
    "RunRequest": "zcl.protocols",
    "Sink": "zcl.executor_base",
    "Progress": "zcl.protocols",
    "RunKeywords": "zcl.run_options",
    "CommandFailedError": "zcl.errors",
    "NodeExecutorBase": "zcl.executor_base",
    "ZmqJournalWriter": "zcl.zmq_journal",
    "ZmqNodeExecutor": "zcl.zmq_node_executor",
    "build_ssh_context": "zcl.ssh_context",
    "build_zmq_context": "zcl.zmq_operational_context",
    "load_agent_keys": "zcl.keys",
    "load_controller_keys": "zcl.keys",
    "read_journal": "zcl.journal",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'zcl' has no attribute {name!r}")
    if name in NEEDS_SSH_EXTRA and importlib.util.find_spec("asyncssh") is None:
        raise ImportError(
            f"zcl.{name} needs asyncssh, the ssh extra: pip install 'zcl[ssh]'", name="asyncssh"
        )
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*_HOME, "__version__"])


# Every public name but the SSH side's, which `from zcl import *` must not need (it is imported
# by name: `from zcl import build_ssh_context`).
NEEDS_SSH_EXTRA = frozenset({"NodeExecutorSSH", "build_ssh_context"})
__all__ = [
    "AgentDrainingError",
    "AgentKeys",
    "AsyncJournalWriterProtocol",
    "CircuitBreaker",
    "CircuitOpenError",
    "CliError",
    "ClusterDescriptor",
    "CommandFailedError",
    "CommandOutput",
    "CommandResult",
    "CommandTimeoutError",
    "ConfigurationError",
    "ControllerKeys",
    "DescriptorError",
    "ExecutorError",
    "FallbackExecutor",
    "FileJournalWriter",
    "InvalidRequestError",
    "JournalError",
    "JournalRecordError",
    "JournalUnavailableError",
    "KeyFileError",
    "NodeDescriptor",
    "NodeExecutorBase",
    "NodeExecutorProtocol",
    "OperationalContext",
    "OperationalContextProtocol",
    "OutputCallback",
    "OutputLimitError",
    "ProbeError",
    "Progress",
    "RecordError",
    "RemoteError",
    "RequestTooLargeError",
    "RetryPolicy",
    "RunKeywords",
    "RunOptions",
    "RunRequest",
    "Sink",
    "SshExecutorOptions",
    "Stream",
    "SystemConfig",
    "TransportError",
    "UnknownNodeError",
    "WireError",
    "ZclError",
    "ZmqExecutorOptions",
    "ZmqJournalWriter",
    "ZmqNodeExecutor",
    "build_zmq_context",
    "load_agent_keys",
    "load_controller_keys",
    "read_journal",
]
