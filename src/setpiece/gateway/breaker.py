"""Circuit breakers (Hystrix-style), one per instance, and the call policy around them.

::

    closed ──(N consecutive failures, or failure rate over the window)──▶ open
    open ──(cool-down elapsed)──▶ half-open: one probe call goes through
    half-open ──probe succeeds──▶ closed        half-open ──probe fails──▶ open again

A failure is a failure of the call: a transport error, a timeout, or a 502, 503 or 504 answer.
Other answers count as successes: a 4xx is the caller's fault, and a 500 is a handler that ran
and failed on this request (one tenant's bad input must not cut every tenant off). While a breaker
is open its instance is ejected: calls go to the others instead of piling up behind a sick one,
so one failing service does not cascade into its callers.

As in Envoy's outlier detection, ejection has a floor: when fewer than ``panic_threshold`` of a
version's instances have a closed breaker, the gateway is in *panic* for that version and spreads
calls over all of its instances, ejected or not. So the last instance is never ejected; a call
made in panic that succeeds closes its instance's breaker. With ``panic_threshold=0`` breakers may
eject every instance, and calls then fail at once (503 with ``Retry-After``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from setpiece.errors import ConfigError
from setpiece.policy import RetryPolicy

__all__ = ["Breaker", "BreakerPolicy", "CallPolicy"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open.

    * ``failures`` — consecutive failures that open it;
    * ``failure_rate`` — or this share of failures among the last ``window`` calls (once at
      least ``min_calls`` were made);
    * ``cooldown`` — seconds open before one probe call is let through;
    * ``panic_threshold`` — when the share of a version's instances whose breaker is closed falls
      below this, breakers are ignored for that version (Envoy's panic threshold; 0: never).
    """

    failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    cooldown: float = 5.0
    panic_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window < 1 or self.min_calls < 1:
            raise ConfigError("BreakerPolicy: failures, window and min_calls must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ConfigError("BreakerPolicy.failure_rate: must be in (0, 1]")
        if self.cooldown < 0:
            raise ConfigError("BreakerPolicy.cooldown: must not be negative")
        if not 0 <= self.panic_threshold <= 1:
            raise ConfigError("BreakerPolicy.panic_threshold: must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How the gateway (and ``ctx.call``) calls an instance.

    * ``timeout`` — seconds for one attempt (504 when it runs out);
    * ``retries`` — further attempts, on another instance when there is one, for idempotent
      methods (GET, HEAD, PUT, DELETE) after a transport error, a timeout, a 502/503/504 or an
      open breaker — never after a 500 (the handler ran and failed; running it again would too);
    * ``backoff`` — seconds before the first retry, doubled for each one after;
    * ``breaker`` — the breaker policy of every instance.
    """

    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.02
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ConfigError("CallPolicy.timeout: must be positive")
        if self.retries < 0 or self.backoff < 0:
            raise ConfigError("CallPolicy: retries and backoff must not be negative")

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retries as a :class:`~setpiece.RetryPolicy`: ``1 + retries`` attempts, the n-th
        retry after ``backoff * 2 ** (n - 1)`` seconds (no cap, no jitter)."""
        return RetryPolicy(
            max_attempts=1 + self.retries, initial_delay=self.backoff, max_delay=math.inf,
            multiplier=2.0, jitter=0,
        )


class Breaker:
    """The breaker of one instance. Call :meth:`allow` before a call and :meth:`record` after."""

    __slots__ = ("_clock", "_probing", "consecutive", "opened_at", "policy", "recent", "state")

    def __init__(
        self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self.state = CLOSED
        self.consecutive = 0
        self.recent: deque[bool] = deque(maxlen=policy.window)
        self.opened_at = 0.0
        self._probing = False

    def __repr__(self) -> str:
        return f"Breaker({self.state}, consecutive={self.consecutive})"

    @property
    def closed(self) -> bool:
        """Whether the instance takes calls as usual (neither ejected nor on probation)."""
        return self.state == CLOSED

    def allow(self) -> bool:
        """Whether a call may go through now (in half-open state: the one probe)."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            if self._clock() - self.opened_at < self.policy.cooldown:
                return False
            self.state = HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.policy.cooldown - (self._clock() - self.opened_at))

    def release(self) -> None:
        """A call :meth:`allow` let through ended with no outcome (cancelled): free the probe."""
        self._probing = False

    def record(self, ok: bool, *, panic: bool = False) -> None:
        """The outcome of a call that :meth:`allow` let through, or (``panic``) that was made
        without asking, every instance being ejected: its success closes the breaker, its
        failure starts the cool-down again."""
        if panic and self.state != CLOSED:
            if ok:
                self._close()
            elif self.state == OPEN:
                self._open()
            return
        if self.state == HALF_OPEN:
            self._probing = False
            if ok:
                self._close()
            else:
                self._open()
            return
        self.recent.append(ok)
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.state == CLOSED and self._tripped():
            self._open()

    def _tripped(self) -> bool:
        policy = self.policy
        if self.consecutive >= policy.failures:
            return True
        calls = len(self.recent)
        if calls < policy.min_calls:
            return False
        return self.recent.count(False) / calls >= policy.failure_rate

    def _open(self) -> None:
        self.state = OPEN
        self.opened_at = self._clock()

    def _close(self) -> None:
        self.state = CLOSED
        self.consecutive = 0
        self.recent.clear()
