"""The one clock under every timer of a runtime: the system's, or a virtual one for tests.

A runtime reads the time and waits through its :class:`Clock` wherever time is part of what it
does: schedules and durable timers (workflow Waits, timeouts, heartbeats), retries' backoff,
and the extensions built on them. Liveness machinery (group heartbeats, session timeouts,
reconnects, handler time limits) stays on the system's monotonic clock: it is about the
process, not about the architecture's time.

:class:`VirtualClock` is Temporal's test clock: time stands still until the test moves it, and
``await clock.advance(seconds)`` runs everything that falls due, in order, without sleeping —
an hourly schedule, a retry backoff of minutes or a day-long Wait in milliseconds of wall time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "VirtualClock"]

Settle = Callable[[], Awaitable[None]]


@runtime_checkable
class Clock(Protocol):
    """What a runtime asks of its clock."""

    #: True for a clock that moves only when told to (no polling needed: it wakes the waiters)
    virtual: bool

    def time(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set (True) or ``timeout`` seconds pass on this clock (False)."""
        ...

    def attach(self, settle: Settle) -> Callable[[], None]:
        """Register a runtime's ``settle`` (awaited before time moves); returns the detach."""
        ...


class SystemClock:
    """The system's clock (the default)."""

    virtual = False

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        if math.isinf(timeout):
            await event.wait()
            return True
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    def attach(self, settle: Settle) -> Callable[[], None]:
        return _nothing

    def __repr__(self) -> str:
        return "SystemClock()"


#: the system clock (stateless: one instance serves every runtime)
SYSTEM_CLOCK = SystemClock()


def _nothing() -> None:
    return None


def _epoch(start: str | datetime | float | None) -> float:
    if start is None:
        return time.time()
    if isinstance(start, bool):
        raise TypeError("VirtualClock(start=...): a time, not a bool")
    if isinstance(start, int | float):
        if not math.isfinite(start):
            raise ValueError(f"VirtualClock(start=...): {start!r} is not a finite time")
        return float(start)
    if isinstance(start, str):
        try:
            parsed = datetime.fromisoformat(start.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"VirtualClock(start={start!r}): not an ISO 8601 time "
                "(e.g. '2026-01-01T00:00:00Z')"
            ) from None
        start = parsed
    if isinstance(start, datetime):
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return start.timestamp()
    raise TypeError(
        f"VirtualClock(start=...): an ISO 8601 string, a datetime or epoch seconds, "
        f"not {type(start).__name__}"
    )


class VirtualClock:
    """A clock that stands still until :meth:`advance` moves it.

    ``start`` is an ISO 8601 string (``"2026-01-01T00:00:00Z"``; no zone means UTC), a
    datetime, or epoch seconds; the system's time when omitted. Pass it to
    ``stack.start(..., clock=clock)``; one clock may drive several runtimes (workers of one
    test). Sleepers wake in order of their due time; between two due times, :meth:`advance`
    waits for every attached runtime to settle — all that is due handled, committed, and
    whatever it triggered run or parked on the clock — so causes come before their effects.
    """

    virtual = True

    def __init__(self, start: str | datetime | float | None = None) -> None:
        self._now = _epoch(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._settles: list[Settle] = []
        self._advancing = False

    def time(self) -> float:
        return self._now

    def now(self) -> datetime:
        """The clock's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self._now, UTC)

    async def sleep(self, seconds: float) -> None:
        if not seconds > 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future  # cancelled: left in the heap, skipped when it comes up

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        if math.isinf(timeout):
            await event.wait()
            return True
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                if not task.done():
                    task.cancel()
        return event.is_set()

    def attach(self, settle: Settle) -> Callable[[], None]:
        self._settles.append(settle)

        def detach() -> None:
            if settle in self._settles:
                self._settles.remove(settle)

        return detach

    @property
    def sleepers(self) -> int:
        """How many waits on this clock are pending."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_due(self) -> float | None:
        """The clock time at which the earliest pending wait ends (None when there is none)."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, running everything that falls due, in order."""
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"VirtualClock.advance: {seconds!r} is not a number of seconds >= 0")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, moment: str | datetime | float) -> None:
        """Move the clock forward to ``moment`` (never back), running what falls due in order."""
        target = _epoch(moment)
        if target < self._now:
            raise ValueError(
                f"VirtualClock.advance_to: {self.now().isoformat()} is already past "
                f"{datetime.fromtimestamp(target, UTC).isoformat()}; a clock never goes back"
            )
        if self._advancing:
            raise RuntimeError("VirtualClock: advance() is already running (await it once)")
        self._advancing = True
        try:
            while True:
                await self._settle()
                due = self.next_due()
                if due is None or due > target:
                    break
                self._now = max(self._now, due)
                self._release(self._now)
            self._now = target
            await self._settle()
        finally:
            self._advancing = False

    def _release(self, now: float) -> None:
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def _settle(self) -> None:
        for _ in range(3):  # let the woken tasks run up to their next await
            await asyncio.sleep(0)
        for settle in list(self._settles):
            await settle()

    def __repr__(self) -> str:
        return f"VirtualClock({self.now().isoformat().replace('+00:00', 'Z')!r})"
