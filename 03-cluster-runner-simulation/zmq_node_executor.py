"""Step 03, ZMQ Node Executor: cluster_runner's `NodeExecutorProtocol` over ZeroMQ.

The code is the product's, in the zcl package (zcl/src/zcl/zmq_node_executor.py), so that a
runner installs it with `pip install ./zcl` and nothing of this course. Read it in this order:

1. `ZmqNodeExecutor(node_id, endpoint, keys)`: one DEALER to one node's agent (`zcl-agent`),
   every command tagged with a request id so that many are in flight at once; one reader task
   hands each reply to the call that waits for it. `run()` returns a `CommandResult`, as
   NodeExecutorSSH does; `stream()` yields output as it comes; `put_file()` / `get_file()`
   move files in pieces; `close()` lets nothing run on.
2. What can go wrong, and what the caller sees (the module's docstring walks through it): a
   command past its timeout is killed with its process group (`CommandTimeoutError`); an
   agent that stops answering breaks its learned heartbeat rhythm and the waiting calls fail
   with `TransportError`; a refused connection or key fails them at once, and a
   `CircuitBreaker` per node then fails fast (`CircuitOpenError`).
3. `ZmqExecutorOptions`: what a context may tune of every node's executor (heartbeat, silence
   allowed, message size, requests in flight), checked when it is made.

The wire format it speaks with the agent is zcl/src/zcl/agent_wire.py; the agent is
zcl/src/zcl/agent/node_agent.py. tests/test_zmq_node_executor.py runs it against real agents.

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
