"""Retry policies: how often, and how far apart, a failing delivery is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass

from setpiece.errors import ConfigError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter. Delays in seconds.

    ``max_attempts`` counts every attempt, the first included: ``max_attempts=1`` never retries.
    The n-th retry waits ``min(max_delay, initial_delay * multiplier ** (n - 1))``, less a random
    part of up to ``jitter`` of it (``jitter=1`` is AWS's "full jitter"). The default gives up
    within about two seconds.
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
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ConfigError("RetryPolicy: delays must not be negative")
        if self.multiplier < 1:
            raise ConfigError(f"RetryPolicy.multiplier: must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter: must be between 0 and 1, got {self.jitter}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        if self.jitter:
            base -= base * self.jitter * (rng or random).random()
        return base
