"""What every executor shares: `run()` and `stream()` check the options and apply the retry
policy and `check=True`; a transport writes only `_run(request, sink)`, the one step that
differs (parallel-ssh's template method).

    class MyExecutor(NodeExecutorBase):
        async def _run(self, request: RunRequest, sink: Sink) -> CommandResult:
            ...   # send request.script with request.options; hand output to the sink

The sink is where output goes while the command runs: None (keep it for the result), an
`on_output` callback, or the `CommandOutput` a stream() reads, which the transport paces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Unpack

from zcl.errors import CommandFailedError
from zcl.output_stream import CommandOutput
from zcl.protocols import CommandResult, OutputCallback, Progress, RunRequest, SystemConfig
from zcl.retry import RetryPolicy, attempt_with_retry
from zcl.run_options import RunKeywords, RunOptions

Sink = OutputCallback | CommandOutput | None


class NodeExecutorBase(ABC):
    """A NodeExecutorProtocol whose run() and stream() are written once, here."""

    node_id: str

    async def run(
        self,
        command: str,
        *,
        on_output: OutputCallback | None = None,
        retry: RetryPolicy | None = None,
        **options: Unpack[RunKeywords],
    ) -> CommandResult:
        request = self.request(command, options)
        return await attempt_with_retry(retry, lambda: self.run_request(request, on_output))

    def stream(self, command: str, **options: Unpack[RunKeywords]) -> CommandOutput:
        request = self.request(command, options)
        return CommandOutput(lambda output: self.run_request(request, output))

    def request(self, command: str, options: RunKeywords) -> RunRequest:
        """The call's command and options, checked here (InvalidRequestError names this node)
        before anything is sent, the same on every transport."""
        return RunRequest.of(self.node_id, command, RunOptions.for_node(self.node_id, options))

    async def run_request(self, request: RunRequest, sink: Sink = None) -> CommandResult:
        """Run a request already checked: what run() and stream() do once the options are
        made, and how the fallback hands one request to either transport."""
        result = await self._run(request, sink)
        if request.options.check and result.exit_status != 0:
            raise CommandFailedError(self.node_id, failed(result), result)
        return result

    @abstractmethod
    async def _run(self, request: RunRequest, sink: Sink) -> CommandResult:
        """Run the request on the node; raise an ExecutorError if it could not be run."""

    @abstractmethod
    async def put_file(
        self, local_path: Path, remote_path: str, *, mode: int | None = None,
        preserve_mode: bool = False, progress: Progress | None = None,
    ) -> None: ...  # fmt: skip

    @abstractmethod
    async def get_file(
        self, remote_path: str, local_path: Path, *, preserve_mode: bool = False,
        progress: Progress | None = None,
    ) -> None: ...  # fmt: skip

    @abstractmethod
    async def system_config(self) -> SystemConfig: ...

    @abstractmethod
    async def close(self) -> None: ...


def failed(result: CommandResult) -> str:
    """A CommandFailedError's message: the command, how it ended, its last line of stderr."""
    status = result.exit_status
    ended = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
    last = result.text("stderr").strip().splitlines()[-1:] or [""]
    return f"{result.command!r} {ended}" + (f": {last[0][:200]}" if last[0] else "")
