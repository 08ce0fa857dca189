"""The runtime's one timer dispatcher, and the schedules it fires.

Durable timers live in the engine, each in a namespace. :class:`TimerDispatcher` is the one loop
that wakes when the earliest timer falls due (or when told that new timers were set) and hands
due timers to the handler of their namespace: :class:`Schedules` for ``setpiece.schedule``, and
whatever extensions register (durable workflows' Wait states, retries and timeouts). A handler
commits each timer's removal with its effects, so a timer fires once even with several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from setpiece.clock import SYSTEM_CLOCK, Clock
from setpiece.engine.contract import Engine, Timer, UnitOfWork
from setpiece.errors import ConflictError, EngineError, RefusedError
from setpiece.event import Event
from setpiece.policy import RetryPolicy
from setpiece.runtime.consumer import dead_letter_record, deliver
from setpiece.runtime.extension import Action, TimerHandler
from setpiece.runtime.schedules import SCHEDULES, next_due
from setpiece.runtime.timeouts import Deadline
from setpiece.runtime.unit import Batch
from setpiece.service import Handler

__all__ = ["Schedules", "TimerDispatcher"]

log = logging.getLogger("setpiece.runtime")

_POLL = 1.0  # the longest sleep: timers set by other processes are seen within it
_BATCH = 500


class TimerDispatcher:
    """Fires due timers through the handler of their namespace."""

    def __init__(
        self, engine: Engine, handlers: Mapping[str, TimerHandler], clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.engine = engine
        self.handlers = handlers
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        #: waiting on the clock with nothing due that it has not seen (see settled)
        self.parked = False

    def wake(self) -> None:
        """Look again now: timers may have been set."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                if await self._fire_due():
                    continue
                following = await self.engine.next_timer()
            except EngineError:
                if self._stopping or getattr(self.engine, "_closed", False):
                    return
                log.exception("firing timers failed; trying again")
                following = None
            # A due timer of a namespace nobody here handles waits for a process that does.
            # A virtual clock moves only in this process: no polling for other processes then.
            wait = math.inf if self.clock.virtual else _POLL
            now = self.clock.time()
            if following is not None and following > now:
                wait = min(max(following - now, 0.005), wait)
            if self._wake.is_set():
                continue
            self.parked = True
            try:
                await self.clock.wait(self._wake, wait)
            finally:
                self.parked = False

    async def settled(self) -> bool:
        """Nothing due now is left for this dispatcher, and it waits for what comes next."""
        if not self.handlers or self._stopping:
            return True
        if not self.parked or self._wake.is_set():
            return False
        now = self.clock.time()
        return not any(t.namespace in self.handlers
                       for t in await self.engine.due_timers(now, _BATCH))

    async def _fire_due(self) -> bool:
        """Fire what is due now; True if anything of ours was."""
        due: dict[str, list[Timer]] = {}
        for timer in await self.engine.due_timers(self.clock.time(), _BATCH):
            if timer.namespace in self.handlers:
                due.setdefault(timer.namespace, []).append(timer)
        for namespace, timers in due.items():
            if self._stopping:
                break
            await self.handlers[namespace](timers)
        return bool(due)


class Schedules:
    """The stack's scheduled handlers (``@svc.every``, ``@svc.cron``), one timer each."""

    def __init__(
        self,
        engine: Engine,
        handlers: Mapping[str, Handler],
        action: Callable[[Handler], Action],
        deadline: Callable[[Handler], Deadline],
        retry: RetryPolicy,
        on_commit: Callable[[], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.handlers = handlers
        self.parked = False  # a handler's retry waits on the clock
        self._action = action
        self._deadline = deadline
        self._retry = retry
        self._on_commit = on_commit

    async def _backoff(self, delay: float) -> None:
        self.parked = True
        try:
            await self.clock.sleep(delay)
        finally:
            self.parked = False

    async def prepare(self) -> None:
        """Set the first timer of every schedule that has none yet."""
        if not self.handlers:
            return
        existing = {t.id for t in await self.engine.timers(SCHEDULES)}
        now = self.clock.time()
        fresh = [
            Timer(SCHEDULES, name, next_due(handler, now))
            for name, handler in self.handlers.items()
            if name not in existing
        ]
        if fresh:
            await self.engine.commit(UnitOfWork(timers=fresh))

    async def fire(self, timers: list[Timer]) -> None:
        for timer in timers:
            handler = self.handlers.get(timer.id)
            if handler is not None:
                await self._fire(timer, handler)

    async def _fire(self, timer: Timer, handler: Handler) -> None:
        scheduled = datetime.fromtimestamp(timer.due).astimezone().isoformat()
        event = Event(
            type="setpiece.schedule",
            source=f"setpiece/{handler.service}",
            id=f"{timer.id}@{timer.due:.3f}",
            time=datetime.fromtimestamp(self.clock.time(), UTC)
            .isoformat(timespec="microseconds").replace("+00:00", "Z"),
            data={"handler": handler.qualname, "scheduled": scheduled},
        )
        batch = Batch(self.engine)
        await deliver(
            self._action(handler), event, batch,
            retry=handler.retry or self._retry, label=handler.qualname, inbox=None,
            dead=lambda exc, n: batch.appends.append(
                dead_letter_record(event, exc, n, label=handler.qualname, group=None, record=None)
            ),
            deadline=self._deadline(handler),
            backoff=self._backoff,
        )
        following = Timer(SCHEDULES, timer.id, next_due(handler, max(timer.due, self.clock.time())))
        batch.fired.append(timer)
        batch.timers.append(following)
        with contextlib.suppress(ConflictError):  # another worker fired this tick
            try:
                await self.engine.commit(batch.unit())
            except RefusedError as exc:  # its effects hold what the engine cannot store
                await self.engine.commit(UnitOfWork(
                    appends=[dead_letter_record(event, exc, 1, label=handler.qualname,
                                                group=None, record=None)],
                    fired=[timer], timers=[following],
                ))
        self._on_commit()
