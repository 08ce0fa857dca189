"""A handler's time limit, and a warning when a handler blocks the event loop.

A timer per attempt (``asyncio.timeout``) costs more than a fast handler, so a
:class:`Deadline` keeps the attempts of one handler in flight in a dict, and one watcher task
(alive only while attempts are in flight) wakes a few times per limit: an attempt past its time
is cancelled and fails with :class:`~setpiece.errors.HandlerTimeout` (retried, then
dead-lettered, like any failure). A plain ``def`` handler runs in a worker thread, which Python
cannot stop: on a timeout the thread finishes in the background and its result is discarded.

An ``async def`` handler that blocks (calls ``time.sleep``, blocking I/O, long CPU work) freezes
every consumer, timer and HTTP request of the process, and no time limit can interrupt it.
:class:`LoopWatch` notices: a small task marks every turn of the loop, and a thread wakes a few
times a second; when the loop has not turned for :data:`BLOCKED_LOOP_WARNING` seconds, the
thread looks at the loop thread's stack and logs a warning naming the handler (or route) that
holds it, and the line it is at.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import CodeType
from typing import Any

from setpiece.errors import HandlerTimeout

__all__ = ["BLOCKED_LOOP_WARNING", "Deadline", "LoopWatch"]

log = logging.getLogger("setpiece.runtime")
_current_task = asyncio.current_task
_monotonic = time.monotonic  # the clock of asyncio's loops

BLOCKED_LOOP_WARNING = 0.5
"""Seconds the event loop may stay blocked before :class:`LoopWatch` warns."""


class Deadline:
    """The time limit of one handler's attempts; see the module docstring."""

    __slots__ = ("_expired", "_inflight", "_interval", "_watcher", "label", "timeout")

    def __init__(self, label: str, timeout: float) -> None:
        self.label = label
        self.timeout = timeout
        self._interval = min(max(timeout / 4, 0.01), 1.0)  # how late a timeout may fire
        self._inflight: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def run(
        self, task: asyncio.Task[Any] | None, action: Callable[..., Awaitable[Any]], *args: Any
    ) -> Any:
        """``await action(*args)`` within the limit; raises HandlerTimeout when it runs out.

        ``task``: the task running this (found when None; a caller that runs many attempts in
        one task passes it, as looking it up costs more than a fast handler's bookkeeping).
        """
        if task is None:
            task = _current_task()
            if task is None:  # pragma: no cover - always inside a task
                return await action(*args)
        self._inflight[task] = _monotonic() + self.timeout
        if self._watcher is None:
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

    async def _watch(self) -> None:
        try:
            while self._inflight:
                await asyncio.sleep(self._interval)
                now = _monotonic()
                for task, deadline in list(self._inflight.items()):
                    if now >= deadline and task not in self._expired and not task.done():
                        self._expired.add(task)
                        task.cancel()
        finally:
            self._watcher = None


class LoopWatch:
    """Warns, naming the handler, when something holds the event loop; see the module
    docstring. One per runtime: :meth:`start` on its loop, :meth:`stop` when it stops.

    ``handlers`` maps the code objects of ``async def`` handlers and routes to their names.
    """

    def __init__(
        self, handlers: Mapping[CodeType, str], threshold: float = BLOCKED_LOOP_WARNING
    ) -> None:
        self._handlers = dict(handlers)
        self._threshold = threshold
        self._turned = _monotonic()
        self._warned_at = 0.0  # the last turn already warned about
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop_thread = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._turned = _monotonic()
        self._ticker = loop.create_task(self._tick(), name="loop watch")
        self._thread = threading.Thread(target=self._watch, name="setpiece loop watch",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def _tick(self) -> None:
        pause = self._threshold / 4
        while True:
            self._turned = _monotonic()
            await asyncio.sleep(pause)

    def _watch(self) -> None:
        while not self._stop.wait(self._threshold / 4):
            turned = self._turned
            blocked = _monotonic() - turned
            if blocked > self._threshold and turned != self._warned_at:
                self._warned_at = turned
                self._warn(blocked)

    def _warn(self, blocked: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
        name = None
        while frame is not None:
            name = self._handlers.get(frame.f_code)
            if name is not None:
                break
            frame = frame.f_back
        if name is None:
            log.warning("the event loop has been blocked for %.1fs (at %s)", blocked, where)
            return
        log.warning(
            "%s has blocked the event loop for %.1fs (at %s): an async def handler must not "
            "block (time.sleep, blocking I/O, long CPU work); await instead, or make it a plain "
            "def (it then runs in a thread)", name, blocked, where,
        )
