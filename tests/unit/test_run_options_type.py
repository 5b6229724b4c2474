"""RunOptions, the one declaration of how a command runs, and the template method that owns
run() and stream(): no socket, no process, no clock.

- RunKeywords (the keyword form the signatures use) mirrors RunOptions field for field;
- a bad value is refused when the options are made, naming the option (and the node, from an
  executor); a misspelled option is a TypeError from run() itself;
- what an executor's caller passes and what the agent reads from the wire are the same options:
  RUN's body round-trips, and the agent refuses with `bad-field` what RunOptions refuses;
- check=True turns a non-zero exit into CommandFailedError, holding the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from zcl import agent_wire as wire
from zcl.errors import CommandFailedError, InvalidRequestError, WireError
from zcl.executor_base import NodeExecutorBase, Sink
from zcl.output_stream import CommandOutput
from zcl.protocols import CommandResult, Progress, RunRequest, SystemConfig
from zcl.run_options import RunKeywords, RunOptions

pytestmark = pytest.mark.timeout(10)


def test_the_keywords_mirror_the_options_field_for_field() -> None:
    fields = typing.get_type_hints(RunOptions)
    keywords = typing.get_type_hints(RunKeywords)
    assert list(keywords) == [f.name for f in dataclasses.fields(RunOptions)]
    assert keywords == fields


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"timeout_s": 0}, "timeout_s must be a positive number"),
        ({"timeout_s": float("nan")}, "timeout_s must be a positive number"),
        ({"kill_grace_s": True}, "kill_grace_s must be a positive number"),
        ({"input": "text"}, "input must be bytes"),
        ({"user": "Robert'); DROP"}, "not a valid user name"),
        ({"cwd": 7}, "cwd must be a string"),
        ({"env": {"A-B": "x"}}, "not a valid environment variable name: 'A-B'"),
        ({"env": {"A": 1}}, "env must map variable names to strings"),
        ({"env": {"A": "x\x00y"}}, "cannot hold a NUL"),
        ({"cwd": "/tmp\x00"}, "cannot hold a NUL"),
        ({"max_output_bytes": 0}, "max_output_bytes must be a whole number >= 1"),
        ({"truncate": "yes"}, "truncate must be True or False"),
    ],
)
def test_a_bad_option_is_refused_when_the_options_are_made(
    options: dict[str, Any], refused: str
) -> None:
    with pytest.raises(InvalidRequestError) as made_alone:
        RunOptions(**options)
    assert made_alone.value.node_id == "" and refused in str(made_alone.value)
    assert not str(made_alone.value).startswith(":")  # no node to name yet
    with pytest.raises(InvalidRequestError) as from_an_executor:
        RunOptions.for_node("node7", options)  # type: ignore[arg-type]
    assert str(from_an_executor.value).startswith("node7: ")
    assert refused in str(from_an_executor.value)


def test_the_options_are_a_value_the_caller_cannot_change_afterwards() -> None:
    env = {"A": "1"}
    options = RunOptions(env=env, timeout_s=5)
    env["A"] = "2"
    assert options.env == {"A": "1"}
    with pytest.raises(TypeError):
        options.env["A"] = "3"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeout_s = 9  # type: ignore[misc]
    assert RunOptions(**options.keywords()) == options
    assert RunOptions().keywords() == {}


def test_the_run_message_carries_the_options_that_travel() -> None:
    options = RunOptions(
        timeout_s=3, env={"A": "1"}, cwd="/srv", input=b"in", user="zclab", kill_grace_s=1,
        max_output_bytes=4096, truncate=True, check=True,
    )  # fmt: skip
    body = wire.RunMessage("make", options, stream=True, window=1 << 20).body()
    assert "truncate" not in body and "check" not in body  # the controller's own
    read = wire.RunMessage.read(wire.decode_body(wire.encode_body(body)))
    assert read.command == "make" and read.stream and read.window == 1 << 20
    assert read.options == dataclasses.replace(options, truncate=False, check=False)


@pytest.mark.parametrize(
    "body",
    [
        {"command": 7},
        {"command": "x\x00y"},
        {"command": "true", "timeout_s": -1},
        {"command": "true", "env": {"A B": "x"}},
        {"command": "true", "input": "not bytes"},
        {"command": "true", "max_output_bytes": "many"},
        {"command": "true", "window": -5},
    ],
)
def test_the_agent_refuses_what_no_controller_of_ours_would_send(body: dict[str, Any]) -> None:
    with pytest.raises(WireError) as refused:
        wire.RunMessage.read(body)
    assert refused.value.kind == "bad-field"


class Scripted(NodeExecutorBase):
    """An executor whose transport answers from a script: the template method alone."""

    node_id = "node1"

    def __init__(self, exit_status: int, chunks: list[bytes] | None = None) -> None:
        self.exit_status, self.chunks = exit_status, chunks or []
        self.requests: list[RunRequest] = []

    async def _run(self, request: RunRequest, sink: Sink) -> CommandResult:
        self.requests.append(request)
        for chunk in self.chunks:
            if isinstance(sink, CommandOutput):
                sink.feed("stdout", chunk)
            elif sink is not None:
                sink("stdout", chunk)
        return CommandResult(
            "node1", request.command, self.exit_status, b"".join(self.chunks), b"oops\n", 0.0
        )

    async def put_file(
        self, local_path: Path, remote_path: str, *, mode: int | None = None,
        preserve_mode: bool = False, progress: Progress | None = None,
    ) -> None: ...  # fmt: skip

    async def get_file(
        self, remote_path: str, local_path: Path, *, preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None: ...  # fmt: skip

    async def system_config(self) -> SystemConfig:
        raise NotImplementedError

    async def close(self) -> None: ...


def test_check_turns_a_non_zero_exit_into_an_error_holding_the_result() -> None:
    executor = Scripted(exit_status=3)
    plain = asyncio.run(executor.run("false", timeout_s=5))
    assert plain.exit_status == 3
    with pytest.raises(CommandFailedError, match=r"^node1: 'false' exited with status 3: oops$"):
        asyncio.run(executor.run("false", check=True))
    assert asyncio.run(Scripted(exit_status=0).run("true", check=True)).exit_status == 0


def test_run_checks_before_the_transport_is_asked() -> None:
    executor = Scripted(exit_status=0)
    with pytest.raises(InvalidRequestError, match=r"^node1: timeout_s"):
        asyncio.run(executor.run("true", timeout_s=-1))
    with pytest.raises(TypeError, match="timeout"):
        asyncio.run(executor.run("true", timeout=5))  # type: ignore[call-arg]
    assert executor.requests == []
    asyncio.run(executor.run("true", env={"A": "1"}, cwd="/srv"))
    [request] = executor.requests
    assert request.options == RunOptions(env={"A": "1"}, cwd="/srv")
    assert request.script.endswith("cd -- /srv || exit 1; unset OLDPWD; true")


def test_stream_hands_the_transport_the_reader_and_checks_at_the_end() -> None:
    async def read() -> list[bytes]:
        async with Scripted(0, [b"a", b"b"]).stream("printf ab") as output:
            return [chunk async for _, chunk in output]

    assert asyncio.run(read()) == [b"a", b"b"]

    async def failing() -> None:
        async with Scripted(2, [b"a"]).stream("exit 2", check=True) as output:
            async for _ in output:
                pass

    with pytest.raises(CommandFailedError) as failed:
        asyncio.run(failing())
    assert failed.value.result.exit_status == 2


@pytest.mark.parametrize(
    "message",
    [
        wire.PutMessage("/srv/f", 0o640, data=b"small"),
        wire.PutMessage("/srv/big", None, size=10 << 20),
        wire.PutMessage("/srv/dir", 0o750, folder=True),
        wire.WriteMessage(b"handle", 1 << 20, b"piece", last=True),
        wire.GetMessage("/srv/f", 0, 1 << 20),
        wire.GetMessage("/srv/f"),
        wire.PingMessage((b"r1", b"r2")),
        wire.CancelMessage(b"r1"),
        wire.CreditMessage(b"r1", 65536),
    ],
    ids=lambda m: type(m).__name__,
)
def test_each_message_reads_back_as_it_was_written(message: Any) -> None:
    """One encoder and one validator per message, shared by the executor and the agent."""
    body = wire.decode_body(wire.encode_body(message.body()))
    assert type(message).read(body) == message


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        (wire.PutMessage, {"path": "relative"}, "bad-path"),
        (wire.PutMessage, {"path": "/a\x00b", "data": b""}, "bad-path"),
        (wire.PutMessage, {"path": "/a", "size": -1}, "bad-field"),
        (wire.PutMessage, {"path": "/a", "mode": 0o17777, "data": b""}, "bad-field"),
        (wire.WriteMessage, {"transfer": "text", "offset": 0, "data": b""}, "bad-field"),
        (wire.GetMessage, {"path": "/a", "offset": 0, "length": wire.MAX_PIECE_BYTES + 1},
         "bad-field"),
        (wire.PingMessage, {"ids": [b"x"] * (wire.MAX_PING_IDS + 1)}, "bad-field"),
        (wire.CreditMessage, {"target": b"r1", "bytes": -5}, "bad-field"),
    ],
)  # fmt: skip
def test_a_malformed_message_is_refused_with_its_code(
    kind: Any, body: dict[str, Any], code: str
) -> None:
    with pytest.raises(WireError) as refused:
        kind.read(body)
    assert refused.value.kind == code
