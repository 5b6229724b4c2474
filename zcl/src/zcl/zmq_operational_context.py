"""`build_zmq_context(descriptor, filter_fn, journal)`: cluster_runner's switch to ZeroMQ.

It mirrors `build_ssh_context(...)` (ssh_context.py) argument for argument, so the switch in the
runner is one function name. Each node is driven the way its descriptor says:

    transport "zmq"  ZmqNodeExecutor to the node's agent (with `fallback=True`: FallbackExecutor,
                     ZeroMQ first and SSH while the node's ZeroMQ circuit is open; a command
                     that may have started is not run again over SSH unless
                     `allow_second_copy=True`)
    transport "ssh"  NodeExecutorSSH, as before: the canary migration moves nodes one by one

The controller's CurveZMQ keys come from `descriptor.zmq_keys_dir` (a controller folder made by
keys.py: id.key_secret and known_hosts). All executors share one ZeroMQ context, which is
terminated when the context exits, however it exits.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import zmq

from zcl.errors import ConfigurationError, KeyFileError
from zcl.executor_base import NodeExecutorBase
from zcl.executor_options import SshExecutorOptions, ZmqExecutorOptions
from zcl.fallback import FallbackExecutor
from zcl.keys import ControllerKeys, load_controller_keys
from zcl.operational_context import NodeFilter, OperationalContext, opened
from zcl.protocols import (
    AsyncJournalWriterProtocol,
    ClusterDescriptor,
    NodeDescriptor,
    NodeExecutorProtocol,
)
from zcl.zmq_node_executor import ZmqNodeExecutor

SSH_EXTRA_HINT = "pip install 'zcl[ssh]'"
# What one node's link costs the controller (the project's fan-out bench measures it): three ZeroMQ
# sockets (the DEALER, the PAIR libzmq makes to report its events, and ours that reads them),
# each with a descriptor for its signalling, and the TCP connection: four descriptors. One
# more of each covers a link being replaced while the old one is still being reaped; the
# leeway, the context's own and the journal's.
SOCKETS_PER_NODE, FILES_PER_NODE, LEEWAY = 4, 5, 128
log = logging.getLogger("zcl.zmq_operational_context")  # its module path, also under python -m


def room_for(
    nodes: int, ctx: zmq.Context[zmq.Socket[bytes]], *, raise_open_files: bool = False
) -> None:
    """Let one context hold every node's link at once: libzmq's default of 1,023 sockets stops
    a controller at about 340 nodes, and the usual soft limit of 1,024 open files at about 250.

    The open-files limit is the host process's, not ours: it is raised only when asked
    (`raise_open_files=True`), and then only as far as the hard limit (the operator's: ulimit
    -Hn, LimitNOFILE=) allows. Short of what the nodes need, a warning names the numbers and
    the way out, and nodes past the limit fail one by one."""
    ctx.max_sockets = max(ctx.max_sockets, SOCKETS_PER_NODE * nodes + LEEWAY)
    needed = FILES_PER_NODE * nodes + LEEWAY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if not raise_open_files:
        log.warning(
            "%d nodes need about %d open files; this process may open %d "
            "(build_zmq_context(..., raise_open_files=True) raises it to the hard limit, %s)",
            nodes,
            needed,
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
        )
        return
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < needed:
        log.warning(
            "%d nodes need about %d open files; the hard limit allows %d (raise LimitNOFILE=)",
            nodes,
            needed,
            hard,
        )


def _ssh_module(node: NodeDescriptor) -> Any:
    """asyncssh is an extra, not part of the core install: it is imported only when a node
    needs SSH, so a controller that speaks only ZeroMQ never needs it."""
    try:
        return importlib.import_module("zcl.ssh_context")
    except ModuleNotFoundError as exc:
        if exc.name != "asyncssh":
            raise
        raise ConfigurationError(
            node.node_id, f"this node needs SSH, which needs asyncssh: {SSH_EXTRA_HINT}"
        ) from None


def ssh_executor(
    node: NodeDescriptor, options: SshExecutorOptions | None = None
) -> NodeExecutorBase:
    """NodeExecutorSSH for a node that uses SSH or falls back to it."""
    executor: NodeExecutorBase = _ssh_module(node).NodeExecutorSSH.for_node(node, options)
    return executor


def checked_configuration(
    descriptor: ClusterDescriptor,
    filter_fn: NodeFilter | None,
    *,
    fallback: bool,
    insecure: bool,
) -> ControllerKeys | None:
    """Everything about the run's nodes that can be known before a command is sent, checked
    now: the controller's keys, a pinned key for every ZeroMQ node, asyncssh where SSH is
    needed. ConfigurationError names the first node that cannot be driven as configured."""
    nodes = [node for node in descriptor.nodes if filter_fn is None or filter_fn(node)]
    over_zmq = [node for node in nodes if node.transport == "zmq"]
    needs_ssh = [node for node in nodes if node.transport == "ssh" or fallback]
    if needs_ssh:
        _ssh_module(needs_ssh[0])
    if descriptor.zmq_keys_dir is None:
        if over_zmq and not insecure:
            raise ConfigurationError(
                over_zmq[0].node_id,
                "the descriptor names no zmq_keys_dir (the controller's CurveZMQ keys); "
                "insecure=True drives agents started with --insecure",
            )
        return None
    try:
        keys = load_controller_keys(Path(descriptor.zmq_keys_dir))
    except KeyFileError as exc:
        first = over_zmq[0].node_id if over_zmq else "controller"
        raise ConfigurationError(first, f"zmq_keys_dir: {exc}") from None
    for node in over_zmq:
        if node.node_id not in keys.known_hosts:
            raise ConfigurationError(
                node.node_id,
                f"no pinned key for node {node.node_id!r} in the controller's known_hosts",
            )
    return keys


@contextlib.asynccontextmanager
async def build_zmq_context(
    descriptor: ClusterDescriptor,
    filter_fn: NodeFilter | None,
    journal: AsyncJournalWriterProtocol,
    *,
    fallback: bool = False,
    allow_second_copy: bool = False,
    insecure: bool = False,
    options: ZmqExecutorOptions | None = None,
    ssh_options: SshExecutorOptions | None = None,
    raise_open_files: bool = False,
) -> AsyncIterator[OperationalContext]:
    """`options` tune every ZeroMQ node's executor, `ssh_options` every SSH one's, the nodes'
    own and those the fallback uses (executor_options.py); `insecure=True` allows a
    descriptor with no zmq_keys_dir (agents without CurveZMQ: tests and demos);
    `raise_open_files=True` lets the context raise this process's open-files limit as far as
    its nodes need (room_for)."""
    keys = checked_configuration(descriptor, filter_fn, fallback=fallback, insecure=insecure)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    zmq_nodes = sum(
        node.transport == "zmq" and (filter_fn is None or filter_fn(node))
        for node in descriptor.nodes
    )
    room_for(zmq_nodes, ctx, raise_open_files=raise_open_files)

    def make_executor(node: NodeDescriptor) -> NodeExecutorProtocol:
        if node.transport == "ssh":
            return ssh_executor(node, ssh_options)
        over_zmq = ZmqNodeExecutor(
            node.node_id, node.agent_endpoint, keys, ctx=ctx, options=options
        )
        if not fallback:
            return over_zmq
        return FallbackExecutor(
            over_zmq, ssh_executor(node, ssh_options), allow_second_copy=allow_second_copy
        )

    try:
        async with opened(
            OperationalContext(descriptor, filter_fn, journal, make_executor)
        ) as context:
            yield context
    finally:
        ctx.term()
