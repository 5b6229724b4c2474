"""Step 03, ZMQ Node Executor: cluster_runner's `NodeExecutorProtocol` over ZeroMQ.

The code is the product's, in the zcl package (zcl/src/zcl/zmq_node_executor.py), so that a
runner installs it with `pip install ./zcl` and nothing of this course. cluster_runner drives
its nodes today with `NodeExecutorSSH` over asyncssh (zcl/src/zcl/ssh_context.py); this is
its ZeroMQ twin, and the step's README gives the whole reading order. Here, read:

1. zcl/src/zcl/executor_base.py: `run()` and `stream()` are written once, in
   `NodeExecutorBase`, for every transport: they check the options (`RunOptions`,
   zcl/src/zcl/run_options.py), apply a retry policy and `check=True`, and hand the request
   to the transport's `_run()`.
2. `ZmqNodeExecutor(node_id, endpoint, keys)` and its `_run()`: one DEALER to one node's agent
   (`zcl-agent`), every command tagged with a request id so that many are in flight at once;
   one reader task hands each reply to the call that waits for it. `run()` returns a
   `CommandResult`, as NodeExecutorSSH does; `stream()` yields output as it comes;
   `put_file()` / `get_file()` move files in pieces; `close()` lets nothing run on.
3. What can go wrong, and what the caller sees (the module's docstring walks through it): a
   command past its timeout is killed with every process it started (they share a process
   group, which one signal reaches) and raises `CommandTimeoutError`; an agent that stops
   answering breaks its learned heartbeat rhythm and the waiting calls fail with
   `TransportError`; a refused connection or key fails them at once, and after a few such
   failures a `CircuitBreaker` (zcl/src/zcl/circuit_breaker.py) fails the node's calls at once
   for a while instead of waiting each time (`CircuitOpenError`).
4. `ZmqExecutorOptions` (zcl/src/zcl/executor_options.py): what a context may tune of every
   node's executor (heartbeat, silence allowed, the grace for an answer past a timeout,
   message size, requests in flight), checked when it is made.

The wire format it speaks with the agent is zcl/src/zcl/agent_wire.py (tabled in zcl/WIRE.md);
the agent is zcl/src/zcl/agent/node_agent.py. tests/test_zmq_node_executor.py runs it against
real agents.

    from zcl import ZmqNodeExecutor, load_controller_keys
    executor = ZmqNodeExecutor("node1", "tcp://node1:5560", load_controller_keys(folder))
    result = await executor.run("nvidia-smi -L", timeout_s=30)
"""

from __future__ import annotations

from zcl.circuit_breaker import CircuitBreaker
from zcl.errors import CircuitOpenError, CommandTimeoutError, TransportError
from zcl.executor_options import ZmqExecutorOptions
from zcl.protocols import CommandResult, NodeExecutorProtocol
from zcl.zmq_node_executor import ZmqNodeExecutor

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CommandResult",
    "CommandTimeoutError",
    "NodeExecutorProtocol",
    "TransportError",
    "ZmqExecutorOptions",
    "ZmqNodeExecutor",
]
