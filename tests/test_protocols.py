"""The contract's data types and the shell script both transports send."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from zcl.errors import CommandTimeoutError, DescriptorError, ExecutorError
from zcl.protocols import (
    ClusterDescriptor,
    CommandResult,
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
    # Nothing asked: the command still meets the documented umask and home folder, on its
    # own first line (it was the bare command before the execution environment was one).
    plain = shell_script("true", None, None)
    assert "\n" not in plain and plain.startswith("umask 022;") and plain.endswith("; true")


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


def test_the_example_descriptor_file_loads() -> None:
    cluster = ClusterDescriptor.load(REPO / "integration-plan" / "cluster.example.json")
    assert [n.node_id for n in cluster.nodes] == ["gpu01", "gpu02"]
    assert cluster.node("gpu02").transport == "ssh" and cluster.node("gpu02").agent_port == 5560


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"nodes": [{"node_id": "a", "hots": "x"}]}', "nodes[0]: unknown field 'hots'"),
        ('{"nodes": [{"node_id": "a"}]}', "nodes[0]: missing field 'host'"),
        ('{"nodes": [{"node_id": "a", "host": "h", "agent_port": "5560"}]}', "nodes[0].agent_port"),
        ('{"nodes": [{"node_id": "a", "host": "h", "transport": "udp"}]}', "nodes[0].transport"),
        ('{"nodes": {"node_id": "a"}}', "'nodes' must be a list"),
        ('{"nodes": [], "zmq_key_dir": "x"}', "unknown field 'zmq_key_dir'"),
        ("[1, 2", "not JSON"),
    ],
)
def test_a_bad_descriptor_names_the_field(tmp_path: Path, text: str, named: str) -> None:
    """It used to raise TypeError from the dataclass ('unexpected keyword argument')."""
    path = tmp_path / "cluster.json"
    path.write_text(text)
    with pytest.raises(DescriptorError) as bad:
        ClusterDescriptor.load(path)
    assert named in str(bad.value) and str(path) in str(bad.value)
