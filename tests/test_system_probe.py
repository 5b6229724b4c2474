"""The system probe's parser, on this machine's real output and on output it must refuse."""

from __future__ import annotations

import os
import subprocess

import pytest

from zcl.errors import ProbeError
from zcl.system_probe import PROBE_SCRIPT, parse_probe


def test_this_machine_as_the_probe_sees_it() -> None:
    output = subprocess.run(["sh", "-c", PROBE_SCRIPT], capture_output=True, text=True, check=True)
    config = parse_probe(output.stdout)
    assert config.cpus == os.cpu_count()
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert abs(config.memory_bytes - physical) < 1 << 20
    assert "lo" not in config.nics and config.numa_nodes >= 1


def test_gpus_and_numa_nodes_are_read_when_present() -> None:
    output = "@@hostname\ngpu7\n@@cpus\n64\n@@memory_kb\n1024\n@@nics\nlo\nib0\neth0\n" + (
        "@@numa\n/sys/devices/system/node/node0\n/sys/devices/system/node/node1\n"
        "@@gpus\nGPU 0: NVIDIA H100 (UUID: GPU-1)\nGPU 1: NVIDIA H100 (UUID: GPU-2)\n"
    )
    config = parse_probe(output)
    assert (config.hostname, config.cpus, config.memory_bytes) == ("gpu7", 64, 1024 * 1024)
    assert config.nics == ("eth0", "ib0") and config.numa_nodes == 2
    assert len(config.gpus) == 2


@pytest.mark.parametrize("output", ["", "@@hostname\nx\n@@cpus\nmany\n", "garbage"])
def test_output_the_script_cannot_print_is_refused(output: str) -> None:
    with pytest.raises(ProbeError):
        parse_probe(output)
