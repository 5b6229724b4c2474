"""Step 03, ZMQ Operational Context: the drop-in for cluster_runner's SSH context.

The code is the product's, in the zcl package (zcl/src/zcl/zmq_operational_context.py). The
switch in a runner is one function name, since `build_zmq_context` takes what
`build_ssh_context` takes:

    async with build_zmq_context(descriptor, filter_fn, journal) as context:
        executor = context.executor("node1")     # a ZmqNodeExecutor, or SSH for that node

Read it in this order:

1. `ClusterDescriptor` (zcl/src/zcl/protocols.py): the nodes, each with its transport ("zmq"
   or "ssh", so nodes can move one by one) and its agent's endpoint, and the folder of the
   controller's CurveZMQ keys. `ClusterDescriptor.load(path)` reads the JSON form.
2. `build_zmq_context(descriptor, filter_fn, journal)`: checks the keys and pins before any
   connection (a `ConfigurationError` naming the node), gives each node its executor, shares
   one ZeroMQ context among them and terminates it however the block exits.
3. `fallback=True` wraps each ZeroMQ node in a `FallbackExecutor`: ZeroMQ first, SSH while the
   node's circuit is open; a command that may have started is not run again over SSH unless
   `allow_second_copy=True`.
4. `OperationalContext` (zcl/src/zcl/operational_context.py) is what both builders return:
   `executor(node_id)`, `run_group(...)`, `system_config(node_id)` and `journal()`, the
   same for either transport.
"""

from __future__ import annotations

from zcl.errors import ConfigurationError, UnknownNodeError
from zcl.fallback import FallbackExecutor
from zcl.operational_context import OperationalContext
from zcl.protocols import ClusterDescriptor, NodeDescriptor, OperationalContextProtocol
from zcl.zmq_operational_context import build_zmq_context

__all__ = [
    "ClusterDescriptor",
    "ConfigurationError",
    "FallbackExecutor",
    "NodeDescriptor",
    "OperationalContext",
    "OperationalContextProtocol",
    "UnknownNodeError",
    "build_zmq_context",
]
