"""Waiting until a runtime is quiet: ``drain`` (all triggered work done) and ``settle`` (all
that is due now done, the rest waiting on the clock), one loop for both.

The loop looks, waits for the next commit (or a short poll), and looks again; quiet means two
looks in a row found nothing pending, with the committer idle before each (an event being
appended is work not yet visible as lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from setpiece.errors import DrainTimeout
from setpiece.runtime.consumer import Consumer

__all__ = ["Quiet", "pending_work"]


async def pending_work(consumers: Sequence[Consumer], *, parked_ok: bool) -> dict[str, int]:
    """Consumers with records not yet committed or a delivery in flight (label -> lag); with
    ``parked_ok``, one waiting on the clock for a retry's backoff counts as quiet."""
    behind: dict[str, int] = {}
    for consumer in consumers:
        if parked_ok and consumer.parked:
            continue
        lag = await consumer.lag()
        if lag or consumer.busy:
            behind[consumer.label] = lag
    return behind


@dataclass(frozen=True, slots=True)
class Quiet:
    """One way of waiting for quiet: what is pending, how long to poll, what to call it."""

    name: str  # "drain", "settle": for the timeout's message
    pending: Callable[[], Awaitable[dict[str, int] | None]]  # None: something else is due
    poll: float  # the longest wait for a commit between two looks
    yield_when_quiet: bool  # between the two quiet looks, only let woken tasks run

    async def wait(
        self,
        idle: Callable[[], Awaitable[None]],
        progress: asyncio.Event,
        timeout: float,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """Return once quiet; DrainTimeout naming what is pending after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        quiet_turns = 0
        while not stopping():
            await idle()
            progress.clear()
            behind = await self.pending()
            if behind == {}:
                quiet_turns += 1
                if quiet_turns >= 2:
                    return
                if self.yield_when_quiet:
                    for _ in range(3):  # let what was just woken reach its next wait
                        await asyncio.sleep(0)
                    continue
            else:
                quiet_turns = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = ", ".join(f"{k}: {v}" for k, v in (behind or {}).items())
                raise DrainTimeout(f"{self.name}: still pending after {timeout}s "
                                   f"({detail or 'deliveries in flight or timers due'})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), min(remaining, self.poll))
