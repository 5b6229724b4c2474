"""The Docker cluster's fault recipes, read and checked without Docker."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from zcl.errors import CliError
from zcl_lab import faults


def chains_and_hooks(steps: list[str], *, made: str, hooked: str) -> tuple[set[str], set[str]]:
    """The chains the steps create (made="-N") or remove ("-X"), and the hooks they insert
    (hooked="-I") or delete ("-D"), each as table:name."""
    chains, hooks = set(), set()
    for step in steps:
        table = "nat" if " -t nat " in step else "filter"
        if chain := re.search(rf" {made} (\S+)", step):
            chains.add(f"{table}:{chain.group(1)}")
        if hook := re.search(rf" {hooked} (\S+) -j (\S+)", step):
            hooks.add(f"{table}:{hook.group(1)}->{hook.group(2)}")
    return chains, hooks


@pytest.mark.parametrize(
    ("fault", "undo"),
    [
        (faults.partition(["10.0.0.3"]) + faults.partition_hook(), faults.heal()),
        (faults.flaky(20), faults.unflaky()),
        (faults.slow(), faults.unslow()),
    ],
    ids=["partition", "flaky", "slow"],
)
def test_every_chain_and_hook_a_fault_adds_its_undo_takes_away(
    fault: list[str], undo: list[str]
) -> None:
    added = chains_and_hooks(fault, made="-N", hooked="-I")
    assert added[0] and added[1]
    assert chains_and_hooks(undo, made="-X", hooked="-D") == added


def test_a_partition_spares_loopback_and_the_peers_cut_off_with_it_and_drops_the_rest() -> None:
    steps = faults.partition(["10.0.0.3", "10.0.0.4"])
    assert steps[-1] == "iptables -A ZCL-PARTITION -j DROP"
    spared = [s for s in steps if s.endswith("-j RETURN")]
    assert len(spared) == 2 + 2 * 2  # lo both ways, each peer both ways
    assert "iptables -A ZCL-PARTITION -s 10.0.0.4 -j RETURN" in spared
    assert all("INPUT" not in s and "OUTPUT" not in s for s in steps)  # hooked in separately


@pytest.mark.parametrize(("text", "percent"), [("20%", 20), ("5", 5), ("99%", 99)])
def test_a_loss_is_read_as_a_percentage(text: str, percent: int) -> None:
    assert faults.loss(text) == percent
    assert f"--probability 0.{percent:02d} " in " ".join(faults.flaky(percent))


@pytest.mark.parametrize("text", ["0", "100%", "-5", "1.5", "lots", ""])
def test_a_loss_out_of_range_is_one_clear_error(text: str) -> None:
    with pytest.raises(CliError, match="flaky needs a loss between 1% and 99%"):
        faults.loss(text)


@pytest.mark.parametrize("text", ["100ms", "2s", "0.5s", ".25s"])
def test_delays_the_relay_takes_are_accepted(text: str) -> None:
    assert faults.delay(text) == text


@pytest.mark.parametrize("text", ["100", "fast", "1.5ms", "-1s"])
def test_other_delays_are_one_clear_error(text: str) -> None:
    with pytest.raises(CliError, match="slow needs a delay such as 100ms"):
        faults.delay(text)


def test_the_command_line_prints_one_step_per_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zcl_lab.faults", "partition", "--peer", "10.0.0.3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == faults.partition(["10.0.0.3"])
    bad = subprocess.run(
        [sys.executable, "-m", "zcl_lab.faults", "flaky", "200%"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr == "faults: error: flaky needs a loss between 1% and 99%, got '200%'\n"


def test_taking_a_slow_link_away_finds_the_relay_that_was_started() -> None:
    """The pattern named the relay's old module after it moved, so `fast` failed on every node
    and the Docker tier's fault runs with it."""
    [pkill] = [step for step in faults.unslow() if step.startswith("pkill")]
    pattern = pkill.split(None, 2)[2].strip("'")
    started = " ".join([*faults.RELAY_COMMAND, "--port", str(faults.SLOW_PORT)])
    assert re.search(pattern, started)
    assert not re.search(pattern, pkill)  # nor the shell that runs pkill itself
    assert faults.RELAY_COMMAND[-1] == "zcl_lab.slow_link"  # a module that exists
