"""The embedded engine's durable timers: rows of ``sp_timers``, set, cancelled and fired by
units of work (:mod:`setpiece.engine.sqlite.store`), read here by due time."""

from __future__ import annotations

from setpiece.engine.contract import Timer
from setpiece.engine.sqlite.store import SQLiteStore

__all__ = ["SQLiteTimers"]


class SQLiteTimers(SQLiteStore):
    """The timer reads of :class:`~setpiece.engine.sqlite.SQLiteEngine` (the last rung,
    :class:`~setpiece.engine.contract.Engine`, with ``close``)."""

    async def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        rows = self._db.execute(
            "SELECT ns, id, due, payload FROM sp_timers WHERE due <= ? ORDER BY due LIMIT ?",
            (now, limit),
        ).fetchall()
        return [Timer(ns, i, due, payload) for ns, i, due, payload in rows]

    async def next_timer(self) -> float | None:
        row = self._db.execute("SELECT MIN(due) FROM sp_timers").fetchone()
        return None if row[0] is None else float(row[0])

    async def timers(self, namespace: str) -> list[Timer]:
        rows = self._db.execute(
            "SELECT ns, id, due, payload FROM sp_timers WHERE ns = ? ORDER BY due, id",
            (namespace,),
        ).fetchall()
        return [Timer(ns, i, due, payload) for ns, i, due, payload in rows]
