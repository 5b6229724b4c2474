"""How one command runs, written down once: `RunOptions`.

Every executor (ZeroMQ, SSH, the fallback), the contexts' `run_group`, and the node agent when
it reads a RUN request take the same options and check them the same way, here, when the
options are made: a bad value is refused before anything is sent, and the agent refuses what
a controller could not have sent. `RunRequest` adds the command and the shell script both
transports send (protocols.shell_script).

    await executor.run("make test", timeout_s=600, cwd="/srv/build", check=True)
    options = RunOptions(timeout_s=600, cwd="/srv/build")   # the same, as one value
    await executor.run("make test", **options.keywords())

`RunKeywords` is the same fields as keywords, for the signatures of run(), stream() and
run_group(): Python types a `**options` argument only through a TypedDict, so it mirrors
RunOptions field for field, and the project's tests fail if the two ever differ.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypedDict, cast

from zcl.errors import InvalidRequestError

# The output a run keeps unless the caller says otherwise (max_output_bytes=), on both
# transports; a node's agent may keep less (its --max-output-bytes), and then that holds.
DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024
MAX_KILL_GRACE_S = 10.0  # the longest SIGTERM-to-SIGKILL either transport grants a request
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # what a shell accepts as a variable name
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\Z")  # what useradd accepts (NAME_REGEX)


class RunKeywords(TypedDict, total=False):
    """RunOptions' fields as keywords (see the module's docstring)."""

    timeout_s: float | None
    env: Mapping[str, str] | None
    cwd: str | None
    input: bytes | None
    user: str | None
    kill_grace_s: float | None
    max_output_bytes: int | None
    truncate: bool
    check: bool


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """One command's options, checked when made (InvalidRequestError names the option).

    `timeout_s`: the command and everything it started are killed after this long
    (CommandTimeoutError). `env`: variables added to the login's environment. `cwd`: where it
    starts (else its user's home). `input`: its stdin (else it reads end of file). `user`: run
    as that user where the node allows it (the agent's --run-as list; over SSH, a login as
    that user). `kill_grace_s`: a timed-out or cancelled command gets SIGTERM and this long
    before SIGKILL (else SIGKILL at once; at most MAX_KILL_GRACE_S, or the agent's
    --max-kill-grace). `max_output_bytes`: the output kept, stdout and stderr together
    (DEFAULT_MAX_OUTPUT_BYTES, or less where the node's agent keeps less); more raises
    OutputLimitError holding what was kept, unless `truncate` asks for a result marked
    `truncated` instead. `check`: a non-zero exit raises CommandFailedError with the result.
    """

    timeout_s: float | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    input: bytes | None = None
    user: str | None = None
    kill_grace_s: float | None = None
    max_output_bytes: int | None = None
    truncate: bool = False
    check: bool = False

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise InvalidRequestError("", problems[0])
        if self.env is not None:  # the caller's dict may change later; these may not
            object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @classmethod
    def for_node(cls, node_id: str, keywords: RunKeywords) -> RunOptions:
        """The executors' way in: the error names the node, as every ExecutorError does."""
        try:
            return cls(**keywords)
        except InvalidRequestError as exc:
            raise InvalidRequestError(node_id, exc.message) from None

    @property
    def output_limit(self) -> int:
        return DEFAULT_MAX_OUTPUT_BYTES if self.max_output_bytes is None else self.max_output_bytes

    def keywords(self) -> RunKeywords:
        """The options as keywords for run(), stream() or run_group(), defaults left out."""
        defaults = RunOptions()
        changed = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(defaults, field.name)
        }
        return cast(RunKeywords, changed)


def _problems(options: RunOptions) -> list[str]:
    """What is wrong with the options, first problem first (nothing: they may be sent)."""
    # Read as plain objects: a caller without a type checker may pass anything.
    fields: dict[str, Any] = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    problems = []
    for name in ("timeout_s", "kill_grace_s"):
        value = fields[name]
        if value is not None and not _positive(value):
            problems.append(f"{name} must be a positive number, got {value}")
    if fields["input"] is not None and not isinstance(fields["input"], bytes):
        problems.append(f"input must be bytes, got {type(fields['input']).__name__}")
    user = fields["user"]
    if user is not None and (not isinstance(user, str) or not USER_NAME.match(user)):
        problems.append(f"not a valid user name: {user!r}")
    if fields["cwd"] is not None and not isinstance(fields["cwd"], str):
        problems.append(f"cwd must be a string, got {type(fields['cwd']).__name__}")
    problems.extend(_env_problems(fields["env"]))
    if any("\x00" in text for text in [_text(fields["cwd"]), *_texts(fields["env"])]):
        problems.append("a command, cwd or env value cannot hold a NUL")
    limit = fields["max_output_bytes"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        problems.append(f"max_output_bytes must be a whole number >= 1, got {limit!r}")
    for name in ("truncate", "check"):
        if not isinstance(fields[name], bool):
            problems.append(f"{name} must be True or False, got {fields[name]!r}")
    return problems


def _positive(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def _env_problems(env: Any) -> list[str]:
    if env is None:
        return []
    if not isinstance(env, Mapping) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in env.items()
    ):
        return ["env must map variable names to strings"]
    bad = [name for name in env if not ENV_NAME.match(name)]
    # A name is pasted into shell code unquoted: only plain names are safe.
    return [f"not a valid environment variable name: {bad[0]!r}"] if bad else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _texts(env: Any) -> list[str]:
    if not isinstance(env, Mapping):
        return []
    return [value for value in env.values() if isinstance(value, str)]
