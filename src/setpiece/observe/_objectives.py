"""Counting what SLOs cover, and the loop that flushes the counts and checks the alerts.

See :mod:`setpiece.observe._slo` for the arithmetic and the durable buckets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from setpiece.bus import bus_stream_name
from setpiece.errors import ConfigError
from setpiece.event import Event
from setpiece.observability import SLO
from setpiece.observe import _slo
from setpiece.runtime.extension import Action
from setpiece.runtime.instrument import Instrumentation, RequestObservation
from setpiece.runtime.outgoing import encode_checked, prepare
from setpiece.signals import Drop

if TYPE_CHECKING:
    from setpiece.runtime.consumer import Consumer
    from setpiece.runtime.runtime import Runtime
    from setpiece.runtime.unit import Attempt
    from setpiece.stack import Stack

__all__ = ["Objectives", "slo_targets"]

log = logging.getLogger("setpiece.observe")


def slo_targets(stack: Stack) -> set[str]:
    """What an SLO may cover in a stack: handlers by qualname, routes as "METHOD /path"."""
    names: set[str] = set()
    for service in stack.services.values():
        names.update(h.qualname for h in service.handlers)
        names.update(f"{r.method} {r.path}" for r in service.routes)
    return names


class _Request(RequestObservation):
    __slots__ = ("counts", "latency", "started")

    def __init__(self, counts: list[int], latency: float | None) -> None:
        self.counts = counts
        self.latency = latency
        self.started = time.perf_counter()

    def end(self, status: int, version: str | None) -> None:
        slow = self.latency is not None and time.perf_counter() - self.started > self.latency
        self.counts[1 if status >= 500 or slow else 0] += 1


class Objectives(Instrumentation):
    """Counts good and bad attempts per SLO; flushes them and checks alerts now and then."""

    def __init__(self, runtime: Runtime, slos: Mapping[str, SLO], interval: float) -> None:
        known = slo_targets(runtime.stack)
        unknown = sorted(set(slos) - known)
        if unknown:
            raise ConfigError(
                f"Observability.slos: {', '.join(map(repr, unknown))} is no handler or route of "
                f"the stack (handlers: 'service.handler'; routes: 'GET /path'; known: "
                f"{sorted(known)})")
        self.runtime = runtime
        self.slos = dict(slos)
        self.interval = interval
        self.counts: dict[str, list[int]] = {target: [0, 0] for target in slos}
        self.stopping = asyncio.Event()
        self._pruned_hour = -1

    # -- counting ---------------------------------------------------------------------------

    def wrap_action(self, consumer: Consumer, action: Action) -> Action:
        slo = self.slos.get(consumer.group)
        if slo is None:
            return action
        counts = self.counts[consumer.group]
        latency = slo.latency
        perf = time.perf_counter

        async def counted(event: Event, attempt: Attempt, number: int) -> None:
            start = perf()
            try:
                await action(event, attempt, number)
            except Drop:
                counts[0] += 1
                raise
            except Exception:
                counts[1] += 1
                raise
            slow = latency is not None and perf() - start > latency
            counts[1 if slow else 0] += 1

        return counted

    def request(
        self, method: str, route: str, service: str | None, traceparent: str | None
    ) -> RequestObservation | None:
        target = f"{method} {route}"
        slo = self.slos.get(target)
        return None if slo is None else _Request(self.counts[target], slo.latency)

    # -- flushing and checking --------------------------------------------------------------

    async def run(self) -> None:
        """Flush and check every ``interval`` seconds on the runtime's clock until stopped."""
        clock = self.runtime.clock
        while not self.stopping.is_set():
            if await clock.wait(self.stopping, self.interval):
                break
            try:
                await self.check(clock.time())
            except Exception:  # an engine hiccup: the counts stay pending, try again later
                log.exception("SLO check failed; trying again in %ss", self.interval)
        await self.flush(clock.time())  # what this worker counted last is not lost

    async def flush(self, now: float) -> None:
        pending = {t: (c[0], c[1]) for t, c in self.counts.items() if c[0] or c[1]}
        await _slo.record_counts(self.runtime.engine, pending, now)
        for target, (good, bad) in pending.items():
            counts = self.counts[target]
            counts[0] -= good
            counts[1] -= bad

    async def status(self, now: float) -> list[_slo.SLOStatus]:
        """Every SLO's status at ``now``, this worker's counts flushed first."""
        await self.flush(now)
        out = []
        for target, slo in self.slos.items():
            minutes, hours = await _slo.read_buckets(self.runtime.engine, target)
            out.append(_slo.evaluate(target, slo, minutes, hours, now))
        return out

    async def check(self, now: float) -> None:
        """Flush, evaluate, publish ``setpiece.slo.burning`` for alerts that start firing."""
        engine = self.runtime.engine
        for status in await self.status(now):
            if await _slo.alert_transition(engine, status, self._burning):
                log.warning("SLO of %s is burning: %s", status.target, ", ".join(status.firing))
        hour = int(now // _slo.HOUR)
        if hour != self._pruned_hour:
            self._pruned_hour = hour
            for target, slo in self.slos.items():
                await _slo.prune(engine, target, slo, now)

    def _burning(self, status: _slo.SLOStatus, started: list[str]
                 ) -> tuple[str, str | None, bytes]:
        stack = self.runtime.stack
        event = prepare(_slo.burning_event(status, started, stack.name), cause=None,
                        service=None)
        return (bus_stream_name(stack.default_bus), event.partitionkey,
                encode_checked(event, self.runtime.config.max_event_bytes))
