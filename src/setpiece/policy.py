"""Retry policies: how often, and how far apart, something that failed is tried again.

:class:`RetryPolicy` is the one backoff of setpiece: a handler's deliveries, a consumer's
reconnects, the supervisor's restarts, the gateway's retries of calls, the production engine's
calls while a server is unreachable, and the wait for a workflow execution all take their delays
from one. :meth:`RetryPolicy.backoff` gives the loop that repeats most often its pauses.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

from setpiece.errors import ConfigError

__all__ = ["Backoff", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter. Delays in seconds.

    ``max_attempts`` counts every attempt, the first included: ``max_attempts=1`` never retries.
    The n-th retry waits ``min(max_delay, initial_delay * multiplier ** (n - 1))``, less a random
    part of up to ``jitter`` of it: ``jitter=1`` is "full jitter" (anywhere from 0 to the delay),
    ``jitter=0.5`` is "equal jitter" (from half the delay to all of it), ``jitter=0`` none. The
    default gives up within about two seconds.
    """

    max_attempts: int = 4
    initial_delay: float = 0.1
    max_delay: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"RetryPolicy.max_attempts: must be at least 1, got {self.max_attempts}"
            )
        for name in ("initial_delay", "max_delay"):
            value = getattr(self, name)
            if not value >= 0:  # NaN too
                raise ConfigError(f"RetryPolicy.{name}: must not be negative, got {value}")
        if not self.multiplier >= 1:
            raise ConfigError(f"RetryPolicy.multiplier: must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter: must be between 0 and 1, got {self.jitter}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry).

        Never more than ``max_delay``, for any ``retry`` (no overflow however large it is).
        ``rng``: the source of the jitter (the ``random`` module's when None).
        """
        if retry < 1:
            raise ValueError(f"RetryPolicy.delay: retry must be at least 1, got {retry}")
        base = self.initial_delay
        if base and retry > 1:
            try:
                base *= float(self.multiplier) ** (retry - 1)
            except OverflowError:
                base = math.inf
        if base > self.max_delay:
            base = self.max_delay
        if self.jitter:
            base -= base * self.jitter * (rng or random).random()
        return base

    def backoff(self, budget: float | None = None, rng: random.Random | None = None) -> Backoff:
        """The pauses of one retry loop, up to ``max_attempts`` attempts and, if given, within
        ``budget`` seconds from now::

            backoff = policy.backoff(budget=10)
            while True:
                try:
                    return await attempt()
                except Unreachable:
                    if not await backoff.pause():
                        raise
        """
        return Backoff(self, budget, rng)


class Backoff:
    """The pauses between the attempts of one retry loop (see :meth:`RetryPolicy.backoff`)."""

    __slots__ = ("_deadline", "_policy", "_rng", "retries")

    def __init__(
        self, policy: RetryPolicy, budget: float | None = None, rng: random.Random | None = None
    ) -> None:
        self._policy = policy
        self._deadline = None if budget is None else time.monotonic() + budget
        self._rng = rng
        self.retries = 0  # pauses taken so far

    async def pause(self) -> bool:
        """Sleep before the next attempt and return True; or return False at once when no
        attempt is left (``max_attempts``) or the pause would end past the budget."""
        retry = self.retries + 1
        if retry >= self._policy.max_attempts:
            return False
        delay = self._policy.delay(retry, self._rng)
        if self._deadline is not None and time.monotonic() + delay > self._deadline:
            return False
        self.retries = retry
        await asyncio.sleep(delay)
        return True
