"""Limits checked where they are cheapest, and output caps the caller chooses, the same on both
transports (issue 22, findings 4 and 5; parts 3 and 4).

80 MiB of stdin passed the executor's own check, was dropped by the agent's message limit, and
came back as "lost with a reconnect" (may_have_run=True); output was cut at 16 MiB with exit 0
and an easy-to-miss `truncated`, while SSH returned everything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq

from tests.agents import RawController, both_transports, executor, running_agent
from zcl.errors import InvalidRequestError, OutputLimitError, RequestTooLargeError
from zcl.run_options import DEFAULT_MAX_OUTPUT_BYTES
from zcl_lab.openssh_server import OpenSshServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
MB = 1_000_000


def agent_counters(endpoint: str, keydir: Path) -> dict[str, int]:
    with zmq.Context() as ctx:
        return RawController(ctx, endpoint, keydir).counters()


async def test_input_over_the_agent_s_message_limit_is_refused_before_it_is_sent(
    keydir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with running_agent(keydir, "--max-message-bytes", str(2 * MB)) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            with pytest.raises(RequestTooLargeError, match="max-message-bytes") as refused:
                await asyncio.wait_for(runner.run(f"touch {marker}", input=b"x" * 3 * MB), 30)
            assert isinstance(refused.value, InvalidRequestError)  # nothing was sent
            assert (await runner.run("echo still")).stdout == b"still\n"  # the link is fine
        counters = await asyncio.to_thread(agent_counters, agent.endpoint, keydir)
    assert not marker.exists()
    assert counters.get("commands") == 1  # the echo only


async def test_a_put_over_the_agent_s_file_limit_is_refused_before_a_piece_is_sent(
    keydir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "big"
    source.write_bytes(b"x" * 3 * MB)
    with running_agent(
        keydir, "--max-file-bytes", str(2 * MB), "--file-root", str(tmp_path)
    ) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            with pytest.raises(RequestTooLargeError, match="max-file-bytes"):
                await asyncio.wait_for(runner.put_file(source, str(tmp_path / "copy")), 30)
        counters = await asyncio.to_thread(agent_counters, agent.endpoint, keydir)
    assert "refused.too-large" not in counters  # refused here, not there
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("transport", ["ssh", "zmq"])
async def test_output_over_the_caller_s_cap_raises_with_what_was_kept(
    sshd: OpenSshServer, keydir: Path, transport: str
) -> None:
    async with both_transports(sshd, keydir) as executors:
        runner = executors[transport]
        command = "head -c 3000 /dev/zero; echo done >&2"
        with pytest.raises(OutputLimitError, match="more than 1000 bytes") as over:
            await asyncio.wait_for(runner.run(command, max_output_bytes=1000), 30)
        kept = over.value.result
        assert kept.truncated and len(kept.stdout) + len(kept.stderr) == 1000
        assert kept.exit_status == 0 and kept.transport == transport
        asked = await asyncio.wait_for(
            runner.run(command, max_output_bytes=1000, truncate=True), 30
        )
        assert asked.truncated and len(asked.stdout) + len(asked.stderr) == 1000
        whole = await asyncio.wait_for(runner.run(command, max_output_bytes=4000), 30)
        assert not whole.truncated and (len(whole.stdout), whole.stderr) == (3000, b"done\n")


@pytest.mark.parametrize("transport", ["ssh", "zmq"])
async def test_the_default_cap_is_the_same_on_both_transports(
    sshd: OpenSshServer, keydir: Path, transport: str
) -> None:
    async with both_transports(sshd, keydir) as executors:
        command = f"head -c {DEFAULT_MAX_OUTPUT_BYTES + 1} /dev/zero"
        with pytest.raises(OutputLimitError) as over:
            await asyncio.wait_for(executors[transport].run(command, timeout_s=60), 60)
        assert len(over.value.result.stdout) == DEFAULT_MAX_OUTPUT_BYTES


@pytest.mark.parametrize("transport", ["ssh", "zmq"])
async def test_streamed_output_keeps_to_the_cap_too(
    sshd: OpenSshServer, keydir: Path, transport: str
) -> None:
    async with both_transports(sshd, keydir) as executors:
        seen: list[bytes] = []
        with pytest.raises(OutputLimitError):
            await asyncio.wait_for(
                executors[transport].run(
                    "head -c 5000 /dev/zero",
                    max_output_bytes=1000,
                    on_output=lambda _, data: seen.append(data),
                ),
                30,
            )
        assert sum(map(len, seen)) == 1000


async def test_a_cap_above_the_agent_s_own_is_refused_before_anything_runs(
    keydir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with running_agent(keydir, "--max-output-bytes", str(MB)) as agent:
        async with executor(agent.endpoint, keydir) as runner:
            with pytest.raises(RequestTooLargeError, match="max-output-bytes"):
                await asyncio.wait_for(runner.run(f"touch {marker}", max_output_bytes=2 * MB), 30)
            # With no cap asked, the node's own (lower) one holds, and is named.
            with pytest.raises(OutputLimitError, match=f"more than {MB} bytes"):
                await asyncio.wait_for(runner.run(f"head -c {2 * MB} /dev/zero"), 30)
    assert not marker.exists()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
async def test_a_cap_that_is_not_a_positive_count_is_refused_alike(
    sshd: OpenSshServer, keydir: Path, bad: object
) -> None:
    async with both_transports(sshd, keydir) as executors:
        for runner in executors.values():
            with pytest.raises(InvalidRequestError, match="max_output_bytes"):
                await runner.run("true", max_output_bytes=bad)  # type: ignore[arg-type]
