"""Misconfiguration is caught when the context is built, not by the first group run, and one
node's failure stays its own entry (issue 22, finding 7)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from tests.agents import free_port
from zcl import keys
from zcl.errors import ConfigurationError
from zcl.journal import FileJournalWriter
from zcl.operational_context import OperationalContext
from zcl.protocols import ClusterDescriptor, CommandResult, NodeDescriptor, NodeExecutorProtocol
from zcl.zmq_operational_context import build_zmq_context

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def descriptor(keydir: Path, *node_ids: str) -> ClusterDescriptor:
    port = free_port()
    nodes = tuple(NodeDescriptor(n, "127.0.0.1", agent_port=port) for n in node_ids)
    return ClusterDescriptor(nodes, zmq_keys_dir=str(keys.controller_dir(keydir, "runner")))


async def test_a_node_with_no_pinned_key_is_named_when_the_context_is_built(
    keydir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="no pinned key for node 'node9'"):
        async with build_zmq_context(
            descriptor(keydir, "node1", "node9"), None, FileJournalWriter(tmp_path / "j")
        ):
            pass


async def test_a_misspelled_option_is_a_type_error_from_the_build_itself(
    keydir: Path, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"heartbeat": 0.5}  # heartbeat_s is the option
    with pytest.raises(TypeError, match="heartbeat"):
        async with build_zmq_context(
            descriptor(keydir, "node1"), None, FileJournalWriter(tmp_path / "j"), **options
        ):
            pass


async def test_no_keys_folder_is_refused_unless_insecure_is_asked(tmp_path: Path) -> None:
    nodes = (NodeDescriptor("node1", "127.0.0.1", agent_port=free_port()),)
    with pytest.raises(ConfigurationError, match="zmq_keys_dir"):
        async with build_zmq_context(
            ClusterDescriptor(nodes), None, FileJournalWriter(tmp_path / "j")
        ):
            pass
    async with build_zmq_context(
        ClusterDescriptor(nodes), None, FileJournalWriter(tmp_path / "k"), insecure=True
    ) as context:
        assert [n.node_id for n in context.nodes] == ["node1"]


async def test_fallback_without_asyncssh_is_named_when_the_context_is_built(
    keydir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A core-only install (no asyncssh) asked for the SSH fallback aborted the first group."""
    real_import = builtins.__import__

    def without_asyncssh(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "asyncssh" or name.startswith("asyncssh."):
            raise ModuleNotFoundError("No module named 'asyncssh'", name="asyncssh")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "zcl.ssh_context", raising=False)
    monkeypatch.setattr(builtins, "__import__", without_asyncssh)
    with pytest.raises(ConfigurationError, match="asyncssh"):
        async with build_zmq_context(
            descriptor(keydir, "node1"), None, FileJournalWriter(tmp_path / "j"), fallback=True
        ):
            pass


async def test_a_node_whose_executor_cannot_be_made_is_its_own_entry(tmp_path: Path) -> None:
    """protocol-mapping.md: one node's failure is its entry, never the group's."""
    nodes = tuple(NodeDescriptor(n, "127.0.0.1") for n in ("good", "bad"))

    class Fine:
        node_id = "good"

        async def run(self, command: str, **_: Any) -> CommandResult:
            return CommandResult("good", command, 0, b"ran", b"", 0.0)

        async def close(self) -> None:
            pass

    def make(node: NodeDescriptor) -> NodeExecutorProtocol:
        if node.node_id == "bad":
            raise ConfigurationError("bad", "cannot be driven as configured")
        return Fine()  # type: ignore[return-value]

    context = OperationalContext(
        ClusterDescriptor(nodes), None, FileJournalWriter(tmp_path / "j"), make
    )
    try:
        outcomes = await context.run_group(["good", "bad"], "true")
    finally:
        await context.aclose()
    assert isinstance(outcomes["bad"], ConfigurationError)
    good = outcomes["good"]
    assert isinstance(good, CommandResult) and good.stdout == b"ran"
