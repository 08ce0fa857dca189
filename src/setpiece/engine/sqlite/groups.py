"""The embedded engine's consumer groups: members by heartbeat, partitions shared among them,
committed offsets (moved only by a unit of work: :mod:`setpiece.engine.sqlite.store`)."""

from __future__ import annotations

import time

from setpiece.engine.contract import Assignment, GroupLog
from setpiece.engine.sqlite.log import SQLiteLog

__all__ = ["SQLiteGroupLog"]


class SQLiteGroupLog(SQLiteLog, GroupLog):
    """The consumer-group rung of :class:`~setpiece.engine.sqlite.SQLiteEngine`."""

    async def drop_group(self, group: str, stream: str) -> None:
        """Forget a consumer group's committed offsets and members on a stream."""
        with self._write() as db:
            row = db.execute("SELECT id FROM sp_streams WHERE name = ?", (stream,)).fetchone()
            if row is not None:
                for table in ("sp_offsets", "sp_members"):
                    db.execute(f"DELETE FROM {table} WHERE grp = ? AND sid = ?", (group, row[0]))

    async def heartbeat(
        self, group: str, stream: str, member: str, *, session_timeout: float
    ) -> Assignment:
        sid, parts = self._stream(stream)
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT INTO sp_members(grp, sid, member, seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(grp, sid, member) DO UPDATE SET seen = excluded.seen",
                (group, sid, member, now),
            )
            db.execute(
                "DELETE FROM sp_members WHERE grp = ? AND sid = ? AND seen < ?",
                (group, sid, now - session_timeout),
            )
            members = tuple(
                r[0]
                for r in db.execute(
                    "SELECT member FROM sp_members WHERE grp = ? AND sid = ? ORDER BY member",
                    (group, sid),
                )
            )
        index = members.index(member)
        owned = tuple(p for p in range(parts) if p % len(members) == index)
        return Assignment(owned, members)

    async def leave(self, group: str, stream: str, member: str) -> None:
        sid, _ = self._stream(stream)
        with self._write() as db:
            db.execute(
                "DELETE FROM sp_members WHERE grp = ? AND sid = ? AND member = ?",
                (group, sid, member),
            )

    async def committed(self, group: str, stream: str) -> dict[int, int]:
        sid, parts = self._stream(stream)
        out = dict.fromkeys(range(parts), 0)
        out.update(
            self._db.execute(
                "SELECT part, off FROM sp_offsets WHERE grp = ? AND sid = ?", (group, sid)
            ).fetchall()
        )
        return out

    async def groups(self) -> list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT DISTINCT g.grp, s.name FROM ("
            "SELECT grp, sid FROM sp_offsets UNION SELECT grp, sid FROM sp_members) g "
            "JOIN sp_streams s ON s.id = g.sid ORDER BY g.grp, s.name"
        ).fetchall()
        return [(g, s) for g, s in rows]
