"""The embedded engine's event sequences (event sourcing): appends with an expected version,
checked and written inside the unit of work's transaction, and reads in version order."""

from __future__ import annotations

import sqlite3
from typing import Any

from setpiece.engine.contract import EventAppend
from setpiece.engine.sqlite.bulk import _Bulk, _In
from setpiece.engine.sqlite.groups import SQLiteGroupLog
from setpiece.errors import ConflictError

__all__ = ["SQLiteEvents"]

# The current version of many sequences of one namespace in one query.
_VERSIONS = _In(
    "SELECT id, max(version) FROM sp_events WHERE ns = ?1 AND id IN (", ") GROUP BY id",
    shared=1,
)
_INSERT = _Bulk(
    "INSERT INTO sp_events(ns, id, version, value) VALUES ", "({0}, {1}, {2}, {3})", "",
    shared=0, width=4,
)


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
        wanted: dict[str, list[str]] = {}
        for append in appends:
            wanted.setdefault(append.namespace, []).append(append.id)
        heads: dict[tuple[str, str], int] = {}
        for ns, ids in wanted.items():
            for id_, version in _VERSIONS.rows(db, [ns], ids):
                heads[(ns, id_)] = version
        rows: list[Any] = []
        for append in appends:
            key = (append.namespace, append.id)
            current = heads.get(key, 0)
            if current != append.expected:
                raise ConflictError(
                    f"events {append.namespace!r}/{append.id!r}: version is {current}, "
                    f"expected {append.expected}"
                )
            ns, id_ = key
            for n, value in enumerate(append.events, current + 1):
                rows += (ns, id_, n, value)
            heads[key] = current + len(append.events)
        _INSERT.run(db, [], rows)
