"""Schedules: handlers run every N seconds or on a cron expression, on durable timers.

Each scheduled handler owns one timer. Firing it runs the handler and, in the same unit of work,
removes the fired timer and sets the next one, so a tick happens once even with several workers
(the others lose the compare-and-set on the fired timer). Ticks missed while nothing ran are
caught up with one run, not many.
"""

from __future__ import annotations

from setpiece.cron import next_cron
from setpiece.service import Handler

__all__ = ["SCHEDULES", "next_due"]

SCHEDULES = "setpiece.schedule"


def next_due(handler: Handler, after: float) -> float:
    """When ``handler`` should next run, strictly after ``after`` (seconds since the epoch)."""
    if handler.every is not None:
        return after + handler.every
    assert handler.cron is not None
    return next_cron(handler.cron, after)
