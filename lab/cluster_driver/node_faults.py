"""The faults the driver injects into nodes, the way real clusters fail: a node killed or
frozen (its container), cut off, lossy or slow (the recipes of zcl_lab.faults, run inside
it), its agent killed with sshd left up. Each fault's start and end goes into the cluster's
event log with the moment it took effect, which each method also returns, so that whoever
injected it measures from that moment in the same process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from zcl.errors import CliError
from zcl_lab import event_log, faults
from zcl_lab.cluster_driver.engine import Engine
from zcl_lab.cluster_driver.layout import AGENT_PORT, say

# "[z]" keeps the pattern from matching a command line that holds it (a health check's).
AGENT_PATTERN = "[z]cl-agent"
DRAIN_WITHIN_S = 40.0  # the agent's default drain (30 s) and its way out


class NodeFaults:
    def __init__(self, engine: Engine, *, dry_run: bool = False) -> None:
        self.engine = engine
        self.dry_run = dry_run  # print each recipe's steps, run nothing

    def record(self, event: str, target: str, ts: float | None = None) -> None:
        event_log.record(self.engine.layout.events, event, target, ts)

    def _container_fault(
        self, node: str | None, event: str, message: str, act: str, **options: Any
    ) -> float:
        container = self.engine.node(node)
        began = time.time()  # when the fault began, not when Docker returned
        getattr(container, act)(**options)
        self.record(event, str(node), began)
        say(f"{node} {message}")
        return began

    def fail(self, node: str | None) -> float:
        return self._container_fault(
            node, "fault.start.fail", "killed (SIGKILL)", "kill", signal="KILL"
        )

    def recover(self, node: str | None) -> float:
        return self._container_fault(node, "fault.end.fail", "started again", "start")

    def pause(self, node: str | None) -> float:
        return self._container_fault(node, "fault.start.pause", "frozen", "pause")

    def resume(self, node: str | None) -> float:
        return self._container_fault(node, "fault.end.pause", "running again", "unpause")

    def _run_recipe(self, node: str, recipe: Sequence[str]) -> None:
        for step in recipe:
            if self.dry_run:
                print(f"{node}: {step}")
                continue
            code, output = self.engine.run_in(node, ["sh", "-c", step])
            if code != 0:
                raise CliError(f"{node}: '{step}' failed (exit {code}): {output.strip()}")

    def _has_chain(self, node: str, probe: list[str]) -> bool:
        return self.engine.succeeds_in(node, probe)

    def partitioned(self, node: str) -> bool:
        return self._has_chain(node, ["iptables", "-S", faults.PARTITION])

    def lossy(self, node: str) -> bool:
        return self._has_chain(node, ["iptables", "-S", faults.FLAKY])

    def slowed(self, node: str) -> bool:
        return self._has_chain(node, ["iptables", "-t", "nat", "-S", faults.SLOW])

    def partition(self, nodes: Sequence[str]) -> float:
        """Cut these nodes off from the rest; the moment the last one's cut began."""
        if not nodes:
            raise CliError("name the node(s) to cut off, e.g. partition worker1 worker2")
        for node in nodes:
            self.engine.node(node)
        began = 0.0
        for node in nodes:
            if self.partitioned(node):
                raise CliError(f"{node} is already partitioned (heal it first)")
            # The node keeps its loopback and the other nodes named with it; everything else
            # (coordinator, collector, runners) is on the far side. The monitor talks only to
            # the coordinator, so its view of the cluster stays intact.
            peers = [self.engine.address(other) for other in nodes if other != node]
            self._run_recipe(node, faults.partition(peers))
            began = time.time()  # the partition begins when the chain is hooked in
            self._run_recipe(node, faults.partition_hook())
            if not self.dry_run:
                self.record("fault.start.partition", node, began)
        if not self.dry_run:
            say(f"partitioned: {' '.join(nodes)}")
        return began

    def heal(self, node: str) -> float | None:
        """Lift the node's partition; when it was lifted, or None if it had none."""
        self._node(node)
        if not self.partitioned(node):
            return None
        began = time.time()
        self._run_recipe(node, faults.heal())
        self.record("fault.end.partition", node, began)
        say(f"healed {node}")
        return began

    def flaky(self, node: str | None, loss: int) -> float:
        node = self._node(node)
        if self.lossy(node):
            raise CliError(f"{node} is already flaky (fast {node} first)")
        began = time.time()
        self._run_recipe(node, faults.flaky(loss))
        if not self.dry_run:
            self.record(f"fault.start.flaky.{loss}%", node, began)
            say(f"{node} now loses {loss}% of its packets")
        return began

    def slow(self, node: str | None, delay: str) -> float:
        node = self._node(node)
        if self.slowed(node):
            raise CliError(f"{node} is already slow (fast {node} first)")
        relay = [*faults.RELAY_COMMAND, "--port", str(faults.SLOW_PORT)]
        relay += ["--delay", delay]
        if self.dry_run:
            print(f"{node}: {' '.join(relay)} (detached)")
            self._run_recipe(node, faults.slow())
            return time.time()
        self.engine.run_in(node, relay, detach=True)
        self.engine.wait_listening(
            node,
            faults.SLOW_PORT,
            10,
            f"the slow-link relay did not start on {node} (delay '{delay}')",
        )
        began = time.time()
        self._run_recipe(node, faults.slow())
        self.record(f"fault.start.slow.{delay}", node, began)
        say(f"{node} now adds {delay} to every round trip")
        return began

    def fast(self, node: str | None) -> None:
        node = self._node(node)
        healed = False
        if self.lossy(node):
            self._run_recipe(node, faults.unflaky())
            self.record("fault.end.flaky", node)
            healed = True
        if self.slowed(node):
            self._run_recipe(node, faults.unslow())
            self.record("fault.end.slow", node)
            healed = True
        say(
            f"{node} has a clean, fast link again"
            if healed
            else f"{node} has no lossy or slow link"
        )

    def agent_down(self, node: str) -> bool:
        return not self.engine.succeeds_in(node, ["pgrep", "-f", AGENT_PATTERN])

    def deployed_agent(self, node: str) -> bool:
        """Is the node's agent the deployment's systemd unit (start --bare, deploy)?"""
        return self.engine.succeeds_in(node, ["systemctl", "is-enabled", "--quiet", "zcl-agent"])

    def kill_agent(self, node: str | None) -> float:
        node = self._node(node)
        if self.agent_down(node):
            raise CliError(f"the agent on {node} is already down (start-agent {node})")
        began = time.time()
        if self.deployed_agent(
            node
        ):  # a unit: killed, and kept down (Restart= would bring it back)
            self._must(node, ["systemctl", "kill", "--signal=KILL", "zcl-agent"])
            self._must(node, ["systemctl", "stop", "zcl-agent"])
        else:
            self._must(node, ["pkill", "-KILL", "-f", AGENT_PATTERN])
        self.record("fault.start.agent-down", node, began)
        say(f"{node}'s agent killed (SIGKILL); its sshd still answers")
        return began

    def restart_agent(self, node: str | None) -> float:
        """Stop the node's agent as an upgrade does (SIGTERM: it drains, refusing new commands
        and finishing the running ones), wait for it to end, start it again; returns how long
        the node was without an agent, stop to listening again."""
        node = self._node(node)
        if self.agent_down(node):
            raise CliError(f"the agent on {node} is down (start-agent {node})")
        began = time.time()
        self.record("fault.start.agent-restart", node, began)
        if self.deployed_agent(node):
            self._must(node, ["systemctl", "restart", "zcl-agent"])  # SIGTERM, wait, start
            self.engine.wait_listening(
                node, AGENT_PORT, 20, f"the agent on {node} did not start (see: logs {node})"
            )
        else:
            self._must(node, ["pkill", "-TERM", "-f", AGENT_PATTERN])
            deadline = time.monotonic() + DRAIN_WITHIN_S
            while not self.agent_down(node):
                if time.monotonic() > deadline:
                    raise CliError(
                        f"the agent on {node} still runs {DRAIN_WITHIN_S:g} s after SIGTERM"
                    )
                time.sleep(0.05)  # it drains in its own time: poll for its end
            self._start_detached_agent(node)
        ended = time.time()
        self.record("fault.end.agent-restart", node, ended)
        say(f"{node}'s agent restarted (SIGTERM, drained, started): {ended - began:.2f} s")
        return ended - began

    def start_agent(self, node: str | None) -> float | None:
        node = self._node(node)
        if not self.agent_down(node):
            say(f"the agent on {node} is running")
            return None
        began = time.time()
        if self.deployed_agent(node):
            self._must(node, ["systemctl", "start", "zcl-agent"])
            self.engine.wait_listening(
                node, AGENT_PORT, 20, f"the agent on {node} did not start (see: logs {node})"
            )
        else:
            self._start_detached_agent(node)
        self.record("fault.end.agent-down", node, began)
        say(f"{node}'s agent started again")
        return began

    def _node(self, node: str | None) -> str:
        self.engine.node(node)  # or one line saying which nodes there are
        return str(node)

    def _start_detached_agent(self, node: str) -> None:
        """The agent as node-init.sh starts it, as user zcl; returns once it listens."""
        agent = ["zcl-agent", "--bind", f"tcp://*:{AGENT_PORT}", "--keys", f"/keys/nodes/{node}"]
        agent += ["--file-root", "/var/lib/zcl-agent"]
        self.engine.run_in(node, agent, detach=True, user="zcl", environment={"HOME": "/home/zcl"})
        self.engine.wait_listening(
            node, AGENT_PORT, 20, f"the agent on {node} did not start (see: logs {node})"
        )

    def _must(self, node: str, argv: list[str]) -> None:
        code, output = self.engine.run_in(node, argv)
        if code != 0:
            raise CliError(f"{node}: {' '.join(argv)} failed (exit {code}): {output.strip()}")
