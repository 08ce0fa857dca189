"""A handler's time limit, and a warning when a handler blocks the event loop.

A timer per attempt (``asyncio.timeout``) costs more than a fast handler, so a
:class:`Deadline` keeps the attempts of one handler in flight in a dict, and one watcher task
(alive only while attempts are in flight) wakes a few times per limit: an attempt past its time
is cancelled and fails with :class:`~setpiece.errors.HandlerTimeout` (retried, then
dead-lettered, like any failure).

The watcher also notices when it wakes late. An ``async def`` handler that blocks (calls
``time.sleep``, blocking I/O, long CPU work) freezes every consumer, timer and HTTP request of
the process; the late wake names the handler(s) in flight, and the limit cannot interrupt them.
A plain ``def`` handler runs in a worker thread and never blocks the loop (on a timeout its
thread finishes in the background, its result discarded).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from setpiece.errors import HandlerTimeout

__all__ = ["BLOCKED_LOOP_WARNING", "Deadline"]

log = logging.getLogger("setpiece.runtime")
_current_task = asyncio.current_task
_monotonic = time.monotonic  # the clock of asyncio's loops

BLOCKED_LOOP_WARNING = 0.5
"""Seconds the event loop may stay blocked before the warning (while a handler runs)."""


class Deadline:
    """The time limit of one handler's attempts; see the module docstring."""

    __slots__ = ("_expired", "_inflight", "_interval", "_tick", "_watcher", "label",
                 "runs_on_loop", "timeout")

    def __init__(self, label: str, timeout: float, *, runs_on_loop: bool = True) -> None:
        self.label = label
        self.timeout = timeout
        self.runs_on_loop = runs_on_loop  # an async def handler (a plain def runs in a thread)
        self._interval = min(max(timeout / 4, 0.01), BLOCKED_LOOP_WARNING / 2)
        self._inflight: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._tick = 0.0

    async def run(self, action: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await action(*args)`` within the limit; raises HandlerTimeout when it runs out."""
        task = _current_task()
        if task is None:  # pragma: no cover - always inside a task
            return await action(*args)
        self._inflight[task] = _monotonic() + self.timeout
        if self._watcher is None:
            self._tick = _monotonic()
            self._watcher = task.get_loop().create_task(
                self._watch(), name=f"deadline {self.label}"
            )
        try:
            return await action(*args)
        except asyncio.CancelledError:
            if task not in self._expired or task.cancelling() > 1:  # not (only) ours: stopping
                raise
            raise HandlerTimeout(
                f"{self.label}: did not finish within its timeout of {self.timeout:g}s"
            ) from None
        finally:
            del self._inflight[task]
            if self._expired and task in self._expired:  # the cancel was ours: the task goes on
                self._expired.discard(task)
                task.uncancel()
            if self.runs_on_loop and _monotonic() - self._tick > BLOCKED_LOOP_WARNING:
                self._check_lag(_monotonic())

    def _check_lag(self, now: float) -> None:
        lag = now - self._tick - self._interval
        if lag > BLOCKED_LOOP_WARNING:
            self._tick = now
            log.warning(
                "%s: the event loop was blocked for %.1fs while this handler ran; an async def "
                "handler must not block (time.sleep, blocking I/O): await instead, or make it a "
                "plain def (it then runs in a thread)", self.label, lag,
            )

    async def _watch(self) -> None:
        try:
            while self._inflight:
                await asyncio.sleep(self._interval)
                now = _monotonic()
                if self.runs_on_loop and self._inflight:
                    self._check_lag(now)
                self._tick = now
                for task, deadline in list(self._inflight.items()):
                    if now >= deadline and task not in self._expired and not task.done():
                        self._expired.add(task)
                        task.cancel()
        finally:
            self._watcher = None
