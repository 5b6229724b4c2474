"""The contract's data types and the shell script both transports send."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cluster_sim.protocols import (
    ClusterDescriptor,
    CommandResult,
    CommandTimeoutError,
    ExecutorError,
    NodeDescriptor,
    SystemConfig,
    shell_script,
)


def run(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False).stdout


def test_shell_script_passes_values_through_untouched(tmp_path: Path) -> None:
    nasty = 'it\'s $HOME `date` "quoted" \\ ;rm -rf /'
    script = shell_script('printf "%s|" "$VALUE" "$(pwd)"', {"VALUE": nasty}, str(tmp_path))
    assert run(script) == f"{nasty}|{tmp_path}|"
    assert shell_script("true", None, None) == "true"


def test_shell_script_refuses_variable_names_that_are_not_names() -> None:
    for name in ("A;B", "1A", "A B", "", "A=B"):
        with pytest.raises(ValueError, match="not a valid environment variable name"):
            shell_script("true", {name: "x"}, None)


def test_a_missing_working_directory_fails_the_command_not_the_caller() -> None:
    script = shell_script("echo ran", None, "/nonexistent")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and done.stdout == ""


def test_descriptors_round_trip_through_json(tmp_path: Path) -> None:
    cluster = ClusterDescriptor(
        nodes=(
            NodeDescriptor("n1", "10.0.0.1", labels={"leaf": "L1"}),
            NodeDescriptor("n2", "10.0.0.2", agent_port=6000, transport="ssh"),
        ),
        zmq_keys_dir="/etc/zcl",
    )
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster.to_dict()))
    loaded = ClusterDescriptor.load(path)
    assert loaded == cluster
    assert loaded.node("n2").agent_endpoint == "tcp://10.0.0.2:6000"
    with pytest.raises(KeyError, match="no node 'n3'"):
        loaded.node("n3")


def test_results_and_errors_read_well() -> None:
    result = CommandResult("n1", "x", 0, b"caf\xc3\xa9\xff", b"", 0.1)
    assert result.ok and result.text() == "café\ufffd"
    error = CommandTimeoutError("n1", "ran too long")
    assert isinstance(error, TimeoutError) and isinstance(error, ExecutorError)
    assert str(error) == "n1: ran too long" and error.node_id == "n1"
    config = SystemConfig("h", 8, 1 << 30, ("GPU 0",), ("eth0",), 2)
    assert SystemConfig.from_dict(config.to_dict()) == config
