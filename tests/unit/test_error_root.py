"""What a maintainer found getting past `except ZclError` (issue 24's review): options,
descriptors, journals and a closed executor now raise within the family, and keep the old
built-in base where they had one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from zcl import (
    ClusterDescriptor,
    ConfigurationError,
    DescriptorError,
    FileJournalWriter,
    JournalUnavailableError,
    NodeDescriptor,
    RecordError,
    RetryPolicy,
    SshExecutorOptions,
    TransportError,
    UnknownNodeError,
    ZclError,
    ZmqExecutorOptions,
    ZmqNodeExecutor,
    read_journal,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("kind", "options", "said"),
    [
        (ZmqExecutorOptions, {"max_in_flight": 2.5}, "max_in_flight must be a whole number"),
        (ZmqExecutorOptions, {"max_message_bytes": True}, "max_message_bytes must be a whole"),
        (ZmqExecutorOptions, {"heartbeat_s": float("inf")}, "heartbeat_s must be a positive"),
        (ZmqExecutorOptions, {"agent_silence_s": 0}, "agent_silence_s must be a positive"),
        (SshExecutorOptions, {"persistent": "no"}, "persistent must be True or False"),
        (RetryPolicy, {"attempts": 0}, "attempts must be a whole number"),
    ],
)
def test_an_option_out_of_range_is_a_configuration_error(
    kind: Any, options: dict[str, Any], said: str
) -> None:
    with pytest.raises(ConfigurationError, match=said) as refused:
        kind(**options)
    assert isinstance(refused.value, ValueError)  # what it raised before


def test_a_descriptor_names_each_node_once_with_real_ports() -> None:
    twice = (NodeDescriptor("n1", "a"), NodeDescriptor("n1", "b"))
    with pytest.raises(DescriptorError, match="'n1' is in the descriptor twice"):
        ClusterDescriptor(twice)
    with pytest.raises(DescriptorError, match=r"nodes\[0\]\.agent_port: a TCP port"):
        ClusterDescriptor.from_dict(
            {"nodes": [{"node_id": "n1", "host": "a", "agent_port": 99999}]}
        )
    with pytest.raises(UnknownNodeError, match="no node 'n9'") as unknown:
        ClusterDescriptor((NodeDescriptor("n1", "a"),)).node("n9")
    assert isinstance(unknown.value, KeyError)


def test_a_closed_or_unreadable_journal_says_so_in_the_family(tmp_path: Path) -> None:
    writer = FileJournalWriter(tmp_path / "j.jsonl")
    asyncio.run(writer.close())
    with pytest.raises(JournalUnavailableError, match="closed"):
        asyncio.run(writer.write({"record_id": "r1"}))
    (tmp_path / "bad.jsonl").write_bytes(b'{"record_id": "r1"}\nnot json\n')
    with pytest.raises(RecordError, match="line 2 is not a record"):
        read_journal(tmp_path / "bad.jsonl")


def test_a_closed_executor_refuses_saying_nothing_was_sent() -> None:
    async def after_close() -> TransportError:
        executor = ZmqNodeExecutor("n1", "tcp://127.0.0.1:9", None)
        await executor.close()
        with pytest.raises(TransportError) as refused:
            await executor.run("true")
        return refused.value

    refused = asyncio.run(after_close())
    assert not refused.may_have_run and isinstance(refused, ZclError)
