"""A per-command retry policy, the same for every executor.

    policy = RetryPolicy(attempts=3, backoff_s=0.5)
    result = await executor.run("nvidia-smi -L", retry=policy)

By default only failures that provably never started the command are retried (a refused
connection, an open circuit, a draining agent: `TransportError.may_have_run` is False), so a
retry can never make a second copy run beside the first. `retry_on` widens that for commands
that are safe to run twice; `retry_timeouts` also retries a CommandTimeoutError. Between
attempts the wait doubles from `backoff_s` up to `max_backoff_s`. The last failure is raised as
it was, with the number of attempts added to its notes.

`attempt_with_retry` takes the sleep as a parameter, so the policy is tested with no clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from zcl.errors import CommandTimeoutError, ConfigurationError, ExecutorError, TransportError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # in all, the first one included
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    retry_on: tuple[type[ExecutorError], ...] = (TransportError,)
    only_if_not_run: bool = True  # a TransportError is retried only if the command never started
    retry_timeouts: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError(
                "", f"attempts must be a whole number of at least 1, got {self.attempts}"
            )
        if not 0 <= self.backoff_s <= self.max_backoff_s:
            raise ConfigurationError("", "backoff_s must be between 0 and max_backoff_s")

    def wants_another(self, error: ExecutorError, attempt: int) -> bool:
        """After `attempt` (1 = the first) failed with `error`: try again?"""
        if attempt >= self.attempts:
            return False
        if isinstance(error, CommandTimeoutError):
            return self.retry_timeouts
        if not isinstance(error, self.retry_on):
            return False
        if isinstance(error, TransportError) and self.only_if_not_run:
            return not error.may_have_run
        return True

    def wait_s(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt`."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


async def attempt_with_retry(
    policy: RetryPolicy | None,
    attempt: Callable[[], Awaitable[T]],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    if policy is None:
        return await attempt()
    number = 1
    while True:
        try:
            return await attempt()
        except ExecutorError as exc:
            if not policy.wants_another(exc, number):
                if number > 1:
                    exc.add_note(f"failed {number} times under {policy}")
                raise
            await sleep(policy.wait_s(number))
            number += 1
