"""The PostgreSQL side of the production engine's consumer groups: members (heartbeats on the
database's clock) and committed offsets (moved only by a unit of work:
:mod:`setpiece.engine.postgres.store`)."""

from __future__ import annotations

import asyncpg

from setpiece.engine.postgres.connection import PgConnection

__all__ = ["PgGroups"]


class PgGroups(PgConnection):
    """The consumer groups of :class:`~setpiece.engine.postgres.PgStore`."""

    async def drop_group(self, group: str, stream: str) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for table in ("sp_offsets", "sp_members"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE grp = $1 AND stream = $2", group, stream
                    )

        await self.call(run)

    async def heartbeat(
        self, group: str, stream: str, member: str, session_timeout: float
    ) -> list[str]:
        """Record a heartbeat (on the database's clock) and return the live members, sorted."""

        async def run(conn: asyncpg.Connection) -> list[str]:
            async with conn.transaction():
                now = await conn.fetchval(
                    "INSERT INTO sp_members(grp, stream, member, seen) "
                    "VALUES ($1, $2, $3, extract(epoch FROM clock_timestamp())) "
                    "ON CONFLICT (grp, stream, member) DO UPDATE SET seen = excluded.seen "
                    "RETURNING seen",
                    group,
                    stream,
                    member,
                )
                await conn.execute(
                    "DELETE FROM sp_members WHERE grp = $1 AND stream = $2 AND seen < $3",
                    group,
                    stream,
                    now - session_timeout,
                )
                rows = await conn.fetch(
                    "SELECT member FROM sp_members WHERE grp = $1 AND stream = $2 ORDER BY member",
                    group,
                    stream,
                )
            return [r[0] for r in rows]

        return await self.call(run)

    async def leave(self, group: str, stream: str, member: str) -> None:
        await self.execute(
            "DELETE FROM sp_members WHERE grp = $1 AND stream = $2 AND member = $3",
            group,
            stream,
            member,
        )

    async def committed(self, group: str, stream: str) -> dict[int, int]:
        rows = await self.fetch(
            "SELECT part, off FROM sp_offsets WHERE grp = $1 AND stream = $2", group, stream
        )
        return {part: off for part, off in rows}

    async def groups(self) -> list[tuple[str, str]]:
        rows = await self.fetch(
            "SELECT grp, stream FROM sp_offsets UNION SELECT grp, stream FROM sp_members "
            "ORDER BY 1, 2"
        )
        return [(g, s) for g, s in rows]
