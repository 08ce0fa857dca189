"""Serving a stack until told to stop: ``setpiece run`` and the child process of ``setpiece dev``.

SIGTERM and SIGINT stop it cleanly: consumers finish the batches in flight (up to the runtime's
shutdown grace) and leave their groups, so their partitions move to the other workers at once;
uncommitted work is read again by whoever owns the partition next.

While it runs, a worker says what it does on the ``setpiece.cli`` logger (INFO): a start-up
summary once its consumers have their first partitions (the engine, each consumer group and the
partitions it owns, whether HTTP is served, then a ``ready:`` line), every later change of
partitions, and every ``stats_interval`` seconds in which something was delivered one line with
the counts and rate (and one ``idle`` line when it stops). Once a minute it gives its heap's
free pages back to the system (``cli/_memory.py``), so its resident memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from setpiece.cli._memory import trim_periodically
from setpiece.errors import EngineError
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.runtime import Runtime
from setpiece.service import InputDecodeError
from setpiece.signals import Drop
from setpiece.stack import Stack

if TYPE_CHECKING:
    from setpiece.event import Event
    from setpiece.runtime.consumer import Consumer
    from setpiece.runtime.unit import Attempt

__all__ = ["serve"]

log = logging.getLogger("setpiece.cli")


async def serve(
    stack: Stack,
    *,
    engine: str | None,
    store: str | None,
    config: RuntimeConfig,
    on_ready: Callable[[Runtime], None] = lambda rt: None,
    stop: asyncio.Event | None = None,
    report_assignments: bool = True,
    stats_interval: float | None = None,
    http: str | None = None,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Run the stack until SIGTERM / SIGINT (or ``stop`` is set), then stop it cleanly.

    ``report_assignments`` logs the start-up summary and every change of partitions;
    ``stats_interval`` (seconds) adds the rate line; ``http`` is what the summary says of HTTP;
    ``metrics`` (host, port) serves Prometheus metrics there (the stack must observe).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform
            loop.add_signal_handler(sig, stop.set)
    try:
        async with stack.start(engine=engine, store=store, config=config) as rt:
            counts = _count_outcomes(rt) if stats_interval else None
            exporter = None
            if metrics is not None:
                from setpiece.observe import serve_metrics

                exporter = await serve_metrics(rt, *metrics)
                log.info("metrics: http://%s:%d/metrics", *metrics)
            on_ready(rt)
            trimmer = loop.create_task(trim_periodically(stop), name="setpiece-heap-trim")
            watcher = (
                loop.create_task(_report(rt, stop, counts, stats_interval, http))
                if report_assignments else None
            )
            await stop.wait()
            log.info("stopping: finishing the batches in flight")
            for sig in signals:  # a second signal interrupts the graceful stop
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            trimmer.cancel()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if exporter is not None:
                exporter.close()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log.info("stopped")


def _count_outcomes(rt: Runtime) -> Counter[str]:
    """Count every delivery attempt's outcome (ok, retry, dead, drop) from now on."""
    counts: Counter[str] = Counter()
    for consumer in rt.consumers:
        consumer.action = _counted(consumer, counts)
    return counts


def _counted(consumer: Consumer, counts: Counter[str]) -> Callable[..., Awaitable[None]]:
    inner = consumer.action
    limit = consumer.retry.max_attempts

    async def action(event: Event, attempt: Attempt, number: int) -> None:
        try:
            await inner(event, attempt, number)
        except Drop:
            counts["drop"] += 1
            raise
        except InputDecodeError:
            counts["dead"] += 1
            raise
        except Exception:
            counts["dead" if number >= limit else "retry"] += 1
            raise
        counts["ok"] += 1

    return action


async def _report(
    rt: Runtime, stop: asyncio.Event, counts: Counter[str] | None, interval: float | None,
    http: str | None,
) -> None:
    """The start-up summary, then partition changes and (every ``interval``) the rate."""
    config = rt.config
    services = f" (services {', '.join(config.services)})" if config.services else ""
    log.info("member %s (pid %d) serving stack %s on %s: %d consumer group(s)%s",
             config.member, os.getpid(), rt.stack.name, rt.engine.url, len(rt.consumers),
             services)
    # The first heartbeat of each consumer assigns its partitions; wait for it (briefly: with
    # other workers, a consumer may rightly own none).
    deadline = time.monotonic() + 2 * config.heartbeat_interval
    while (not stop.is_set() and time.monotonic() < deadline
           and not all(c.owned for c in rt.consumers)):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)
    seen: dict[str, tuple[int, ...]] = {}
    _log_assignments(rt, seen)
    log.info("HTTP: %s", http or _http_note(rt.stack))
    owned = sum(len(c.owned) for c in rt.consumers)
    rate = (f"a rate line every {interval:g} s while events flow" if interval
            else "no rate lines")
    log.info("ready: %d consumer group(s) own %d partition(s); %s", len(rt.consumers), owned,
             rate)
    last, last_at, idle_said = Counter(counts or ()), time.monotonic(), True
    next_rate = last_at + (interval or 0)
    while not stop.is_set():
        step = config.heartbeat_interval / 2
        if interval:
            step = max(0.0, min(step, next_rate - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), step)
        if stop.is_set():
            break
        _log_assignments(rt, seen)
        if counts is None or not interval or time.monotonic() < next_rate:
            continue
        now = time.monotonic()
        delta = Counter(counts)
        delta.subtract(last)
        if delta.total():
            await _log_rate(rt, delta, now - last_at)
            idle_said = False
        elif not idle_said:
            log.info("idle: nothing delivered in the last %.0f s", now - last_at)
            idle_said = True
        last, last_at, next_rate = Counter(counts), now, now + interval


def _log_assignments(rt: Runtime, seen: dict[str, tuple[int, ...]]) -> None:
    for consumer in rt.consumers:
        owned = tuple(sorted(consumer.owned))
        if seen.get(consumer.label) != owned:
            seen[consumer.label] = owned
            log.info("%s: owns partitions %s of %s", consumer.label,
                     list(owned) or "none", consumer.stream)


async def _log_rate(rt: Runtime, delta: Counter[str], seconds: float) -> None:
    attempts = delta.total()
    try:
        lag: Any = sum((await rt.lag()).values())
    except EngineError:
        lag = "unknown"
    log.info("delivered %d in %.1f s (%.1f/s): %d ok, %d retried, %d dead-lettered, "
             "%d dropped; lag %s", attempts, seconds, attempts / seconds if seconds else 0.0,
             delta["ok"], delta["retry"], delta["dead"], delta["drop"], lag)


def _http_note(stack: Stack) -> str:
    routes = sum(len(s.routes) for s in stack.services.values())
    if not routes:
        return "none (the stack declares no HTTP route)"
    return (f"{routes} route(s), not served by setpiece run: serve them with setpiece gateway "
            "(it runs the handlers too)")
