"""Circuit breakers (Hystrix-style), one per instance (their policies are declared with
:class:`~setpiece.http.BreakerPolicy` and :class:`~setpiece.http.CallPolicy`).

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

import time
from collections import deque
from collections.abc import Callable

from setpiece.http import BreakerPolicy, CallPolicy

__all__ = ["Breaker", "BreakerPolicy", "CallPolicy"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


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
