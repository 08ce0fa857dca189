"""Cron expressions: five fields (minute, hour, day of month, month, day of week), read in UTC.

::

    check_cron("*/5 * * * *", "service 'billing'")     # ConfigError naming where, if invalid
    next_cron("0 9 * * 1-5", after=time.time())         # the next 09:00 UTC on a weekday

Pure: parsing and the next firing time only. Running handlers on durable timers is the runtime's
(:mod:`setpiece.runtime.schedules`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from setpiece.errors import ConfigError

__all__ = ["check_cron", "next_cron"]


def check_cron(expression: str, where: str) -> None:
    """Raise ConfigError, naming ``where`` and the expression, if ``expression`` is invalid."""
    try:
        CronSim(expression, datetime.now(UTC))
    except (CronSimError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid cron expression {expression!r} ({exc})") from None


def next_cron(expression: str, after: float) -> float:
    """The first time ``expression`` fires strictly after ``after`` (seconds since the epoch)."""
    start = datetime.fromtimestamp(after, UTC).replace(microsecond=0)
    return next(CronSim(expression, start)).timestamp()
