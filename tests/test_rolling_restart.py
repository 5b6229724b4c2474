"""A rolling restart is invisible to a runner (issue 22, part 2).

While a runner keeps every node busy through `build_zmq_context(..., fallback=True)`, each
node's agent is restarted in turn as an operator's upgrade would (SIGTERM, the drain, a new
agent on the same port). Every command must complete exactly once, over ZeroMQ or SSH: none
fails, none runs twice, and the journal holds every record once. Each command leaves a file
named after its token, made by whichever transport ran it, so a second run would show as a
second file and a lost one as none.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import skip_here_fail_on_ci
from zcl.errors import ExecutorError
from zcl.journal import read_journal
from zcl.zmq_operational_context import build_zmq_context
from zcl_lab.openssh_server import sshd_missing_reason
from zcl_lab.simulated_cluster import SimulatedCluster

NODES = 4
ROUNDS_AFTER_MOST = 60  # of 0.1 s or more each: well past the circuit's 2 s cooldown


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    skip_here_fail_on_ci(sshd_missing_reason(), "the rolling restart test")
    with SimulatedCluster(nodes=NODES, leaves=2, fixed_ports=True) as running:
        yield running


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_a_rolling_restart_fails_no_command_and_runs_none_twice(
    cluster: SimulatedCluster, shared_dir: Path
) -> None:
    runs_dir = shared_dir  # each command's trace, whichever transport ran it
    tokens = itertools.count()
    outcomes: list[tuple[str, str, str | ExecutorError]] = []  # node, token, transport or error
    restarting = asyncio.Event()
    back: set[str] = set()  # nodes served by ZeroMQ again, in a round begun with all agents back
    restarted = asyncio.Event()

    async with build_zmq_context(
        cluster.descriptor(), None, cluster.zmq_journal(), fallback=True
    ) as context:

        async def keep_busy(node: str) -> None:
            """One command after another on this node until every agent has been restarted,
            then until ZeroMQ serves it again: at once, or once the circuit that the refused
            connections of the restart opened lets a probe through (its cooldown, 2 s)."""
            rounds_after = 0
            while rounds_after < 3 or (node not in back and rounds_after < ROUNDS_AFTER_MOST):
                if restarted.is_set():
                    rounds_after += 1
                token = f"{node}-{next(tokens)}"
                # Long enough that a restart finds some running and has to drain them.
                command = f"sleep 0.1; touch {runs_dir}/{token}.$$"
                try:
                    result = await context.executor(node).run(command, timeout_s=30)
                    outcome: str | ExecutorError = result.transport or "?"
                    assert result.exit_status == 0, result
                except ExecutorError as exc:
                    outcome = exc
                outcomes.append((node, token, outcome))
                if rounds_after and outcome == "zmq":
                    back.add(node)
                record = {"node": node, "token": token, "round_after": rounds_after}
                await context.journal().write(record)

        async def restart_each() -> None:
            restarting.set()
            for node in cluster.node_ids:
                await asyncio.sleep(0.3)  # the runner keeps going between restarts
                await asyncio.to_thread(cluster.restart_agent, node)
            restarted.set()

        await asyncio.gather(*(keep_busy(node) for node in cluster.node_ids), restart_each())
        await context.journal().flush()

    failed = [(node, token, o) for node, token, o in outcomes if isinstance(o, ExecutorError)]
    assert not failed, f"{len(failed)} of {len(outcomes)} commands failed: {failed[:5]}"
    made = Counter(path.name.split(".")[0] for path in runs_dir.iterdir())
    twice = {token: count for token, count in made.items() if count > 1}
    served = [o for _, token, o in outcomes if token in twice]
    assert not twice, f"run more than once: {twice}, served by {served}"
    assert set(made) == {token for _, token, _ in outcomes}, "a command that succeeded never ran"
    records = Counter(r["token"] for r in read_journal(cluster.dir / "zmq-journal.jsonl"))
    assert set(records) == set(made) and set(records.values()) == {1}
    # Checked per node: "the last outcomes overall" failed when a command that fell back to
    # SSH during the last restart ended after the other nodes' rounds.
    assert back == set(cluster.node_ids), "ZeroMQ serves again once the agents are back"
