"""Schedules: handlers run every N seconds or on a cron expression, on durable timers.

Each scheduled handler owns one timer. Firing it runs the handler and, in the same unit of work,
removes the fired timer and sets the next one, so a tick happens once even with several workers
(the others lose the compare-and-set on the fired timer). Ticks missed while nothing ran are
caught up with one run, not many.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from setpiece.errors import ConfigError
from setpiece.service import Handler

__all__ = ["SCHEDULES", "check_cron", "next_due"]

SCHEDULES = "setpiece.schedule"


def check_cron(expression: str, where: str) -> None:
    try:
        CronSim(expression, datetime.now(UTC))
    except (CronSimError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid cron expression {expression!r} ({exc})") from None


def next_due(handler: Handler, after: float) -> float:
    """When ``handler`` should next run, strictly after ``after`` (seconds since the epoch)."""
    if handler.every is not None:
        return after + handler.every
    assert handler.cron is not None
    start = datetime.fromtimestamp(after, UTC).replace(microsecond=0)
    return next(CronSim(handler.cron, start)).timestamp()
