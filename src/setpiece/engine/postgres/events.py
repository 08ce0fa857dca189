"""The PostgreSQL side of event sequences (event sourcing): reads in version order, and the
arguments that let ``sp_commit_v2`` check expected versions and append in the unit's
transaction (under an advisory lock per sequence, like every key a unit checks)."""

from __future__ import annotations

from collections.abc import Sequence

from setpiece.engine.contract import EventAppend
from setpiece.engine.postgres.connection import PgConnection
from setpiece.errors import ConflictError

__all__ = ["PgEvents", "event_args"]


class PgEvents(PgConnection):
    """Event sequences of :class:`~setpiece.engine.postgres.PgStore`."""

    async def read_events(
        self, namespace: str, id: str, after: int = 0, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        rows = await self.fetch(
            "SELECT version, value FROM sp_events WHERE ns = $1 AND id = $2 AND version > $3 "
            "ORDER BY version LIMIT $4",
            namespace, id, after, limit,
        )
        return [(v, b) for v, b in rows]

    async def event_sequences(
        self, namespace: str, after: str = "", limit: int = 1000
    ) -> list[tuple[str, int]]:
        rows = await self.fetch(
            "SELECT id, max(version) FROM sp_events WHERE ns = $1 AND id > $2 "
            "GROUP BY id ORDER BY id LIMIT $3",
            namespace, after, limit,
        )
        return [(i, v) for i, v in rows]


def event_args(appends: Sequence[EventAppend]) -> tuple[list[tuple[str, str]], list[object]]:
    """The sequences to lock, and the arrays ``sp_commit_v2`` takes: one expected version per
    sequence (appends to one sequence in a unit merged, in order), then one row per event."""
    merged: dict[tuple[str, str], tuple[int, list[bytes]]] = {}
    for append in appends:
        key = (append.namespace, append.id)
        found = merged.get(key)
        if found is None:
            merged[key] = (append.expected, list(append.events))
            continue
        expected, events = found
        if append.expected != expected + len(events):
            raise ConflictError(
                f"events {append.namespace!r}/{append.id!r}: version is "
                f"{expected + len(events)}, expected {append.expected}"
            )
        events.extend(append.events)
    rows = [
        (ns, id_, expected + n, value)
        for (ns, id_), (expected, events) in merged.items()
        for n, value in enumerate(events, 1)
    ]
    return list(merged), [
        [ns for ns, _ in merged],
        [id_ for _, id_ in merged],
        [expected for expected, _ in merged.values()],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    ]
