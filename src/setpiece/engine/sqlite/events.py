"""The embedded engine's event sequences (event sourcing): appends with an expected version,
checked and written inside the unit of work's transaction, and reads in version order."""

from __future__ import annotations

import sqlite3

from setpiece.engine.contract import EventAppend
from setpiece.engine.sqlite.groups import SQLiteGroupLog
from setpiece.errors import ConflictError

__all__ = ["SQLiteEvents"]

_VERSION = "SELECT max(version) FROM sp_events WHERE ns = ? AND id = ?"
_INSERT = "INSERT INTO sp_events(ns, id, version, value) VALUES (?, ?, ?, ?)"


class SQLiteEvents(SQLiteGroupLog):
    """Event sequences: one row per event, keyed by (namespace, id, version)."""

    async def read_events(
        self, namespace: str, id: str, after: int = 0, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT version, value FROM sp_events WHERE ns = ? AND id = ? AND version > ? "
            "ORDER BY version LIMIT ?",
            (namespace, id, after, -1 if limit is None else limit),
        ).fetchall()
        return [(v, b) for v, b in rows]

    async def event_sequences(
        self, namespace: str, after: str = "", limit: int = 1000
    ) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT id, max(version) FROM sp_events WHERE ns = ? AND id > ? "
            "GROUP BY id ORDER BY id LIMIT ?",
            (namespace, after, limit),
        ).fetchall()
        return [(i, v) for i, v in rows]

    @staticmethod
    def _append_events(db: sqlite3.Connection, appends: list[EventAppend]) -> None:
        """Check every expected version, then insert (inside the unit's write transaction)."""
        heads: dict[tuple[str, str], int] = {}
        rows: list[tuple[str, str, int, bytes]] = []
        for append in appends:
            key = (append.namespace, append.id)
            current = heads.get(key)
            if current is None:
                current = db.execute(_VERSION, key).fetchone()[0] or 0
            if current != append.expected:
                raise ConflictError(
                    f"events {append.namespace!r}/{append.id!r}: version is {current}, "
                    f"expected {append.expected}"
                )
            ns, id_ = key
            rows.extend(
                (ns, id_, current + n, value) for n, value in enumerate(append.events, 1)
            )
            heads[key] = current + len(append.events)
        db.executemany(_INSERT, rows)
