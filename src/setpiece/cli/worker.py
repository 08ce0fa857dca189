"""Serving a stack until told to stop: ``setpiece run`` and the child process of ``setpiece dev``.

SIGTERM and SIGINT stop it cleanly: consumers finish the batches in flight (up to the runtime's
shutdown grace) and leave their groups, so their partitions move to the other workers at once;
uncommitted work is read again by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.runtime import Runtime
from setpiece.stack import Stack

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
) -> None:
    """Run the stack until SIGTERM / SIGINT (or ``stop`` is set), then stop it cleanly."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform
            loop.add_signal_handler(sig, stop.set)
    try:
        async with stack.start(engine=engine, store=store, config=config) as rt:
            on_ready(rt)
            watcher = (
                loop.create_task(_report_assignments(rt, stop)) if report_assignments else None
            )
            await stop.wait()
            log.info("stopping: finishing the batches in flight")
            for sig in signals:  # a second signal interrupts the graceful stop
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log.info("stopped")


async def _report_assignments(rt: Runtime, stop: asyncio.Event) -> None:
    """Log each consumer's partitions whenever they change (members come and go)."""
    seen: dict[str, tuple[int, ...]] = {}
    while not stop.is_set():
        for consumer in rt.consumers:
            owned = tuple(sorted(consumer.owned))
            if seen.get(consumer.label) != owned:
                seen[consumer.label] = owned
                log.info("%s: owns partitions %s of %s", consumer.label,
                         list(owned) or "none", consumer.stream)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rt.config.heartbeat_interval / 2)
