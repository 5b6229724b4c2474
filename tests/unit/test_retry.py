"""The retry policy with no sockets and no clock: the sleep is handed in."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from zcl.errors import (
    AgentDrainingError,
    CommandTimeoutError,
    ExecutorError,
    RemoteError,
    TransportError,
)
from zcl.retry import RetryPolicy, attempt_with_retry

NEVER_STARTED = TransportError("n1", "refused", may_have_run=False)
MAY_HAVE_RUN = TransportError("n1", "connection lost mid-command")


def attempts(policy: RetryPolicy | None, *failures: ExecutorError) -> tuple[int, list[float]]:
    """How many attempts were made and the pauses between them, failing with `failures` in
    turn and then succeeding."""
    made: list[int] = []
    pauses: list[float] = []

    async def attempt() -> str:
        made.append(1)
        if len(made) <= len(failures):
            raise failures[len(made) - 1]
        return "done"

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def go() -> None:
        await attempt_with_retry(policy, attempt, sleep)

    with contextlib.suppress(ExecutorError):
        asyncio.run(go())
    return len(made), pauses


def test_no_policy_is_one_attempt() -> None:
    assert attempts(None, NEVER_STARTED) == (1, [])


def test_what_never_started_is_retried_with_doubling_pauses_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=5, backoff_s=1, max_backoff_s=3)
    assert attempts(policy, *[NEVER_STARTED] * 10) == (5, [1, 2, 3, 3])
    draining = AgentDrainingError("n1", "draining")
    assert attempts(policy, draining, draining) == (3, [1, 2])  # then it succeeded


def test_what_may_have_started_is_not_retried_unless_the_policy_says_so() -> None:
    assert attempts(RetryPolicy(backoff_s=0), MAY_HAVE_RUN) == (1, [])
    assert attempts(RetryPolicy(backoff_s=0, only_if_not_run=False), MAY_HAVE_RUN) == (2, [0])


def test_timeouts_and_refusals_are_retried_only_when_named() -> None:
    timeout = CommandTimeoutError("n1", "ran over")
    refused = RemoteError("n1", "busy")
    assert attempts(RetryPolicy(backoff_s=0), timeout) == (1, [])
    assert attempts(RetryPolicy(backoff_s=0, retry_timeouts=True), timeout) == (2, [0])
    assert attempts(RetryPolicy(backoff_s=0), refused) == (1, [])
    widened = RetryPolicy(backoff_s=0, retry_on=(TransportError, RemoteError))
    assert attempts(widened, refused, refused) == (3, [0, 0])


def test_the_last_error_says_how_many_attempts_failed() -> None:
    policy = RetryPolicy(attempts=2, backoff_s=0)

    async def failing() -> None:
        raise TransportError("n1", "refused", may_have_run=False)

    async def no_sleep(_: float) -> None:
        return None

    with pytest.raises(TransportError) as failed:
        asyncio.run(attempt_with_retry(policy, failing, no_sleep))
    assert failed.value.__notes__ == [f"failed 2 times under {policy}"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"attempts": 0}, "attempts"), ({"backoff_s": -1}, "backoff_s"), ({"backoff_s": 11}, "max")],
)
def test_a_policy_that_makes_no_sense_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**options)  # type: ignore[arg-type]
