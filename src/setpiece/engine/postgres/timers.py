"""The PostgreSQL side of the production engine's durable timers: rows of ``sp_timers``, set,
cancelled and fired by units of work (:mod:`setpiece.engine.postgres.store`), read here by due
time."""

from __future__ import annotations

from setpiece.engine.contract import Timer
from setpiece.engine.postgres.connection import PgConnection

__all__ = ["PgTimers"]


class PgTimers(PgConnection):
    """The timer reads of :class:`~setpiece.engine.postgres.PgStore`."""

    async def due_timers(self, now: float, limit: int) -> list[Timer]:
        rows = await self.fetch(
            "SELECT ns, id, due, payload FROM sp_timers WHERE due <= $1 ORDER BY due LIMIT $2",
            now,
            limit,
        )
        return [Timer(ns, i, due, payload) for ns, i, due, payload in rows]

    async def next_timer(self) -> float | None:
        rows = await self.fetch("SELECT min(due) FROM sp_timers")
        return None if rows[0][0] is None else float(rows[0][0])

    async def timers(self, namespace: str) -> list[Timer]:
        rows = await self.fetch(
            "SELECT ns, id, due, payload FROM sp_timers WHERE ns = $1 ORDER BY due, id",
            namespace,
        )
        return [Timer(ns, i, due, payload) for ns, i, due, payload in rows]
