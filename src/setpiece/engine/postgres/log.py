"""The PostgreSQL side of the production engine's log: the streams and their partitions.

The records themselves are in JetStream (:mod:`setpiece.engine.nats.log`); ``sp_streams`` and
``sp_partitions`` hold each stream's declaration and, per partition, the last sequence the
outbox assigned (:mod:`setpiece.engine.postgres.outbox`).
"""

from __future__ import annotations

import asyncpg

from setpiece.engine.contract import StreamSpec
from setpiece.engine.postgres.connection import PgConnection
from setpiece.errors import ConfigError

__all__ = ["PgLog"]


class PgLog(PgConnection):
    """The streams of :class:`~setpiece.engine.postgres.PgStore`."""

    async def stream(self, name: str) -> StreamSpec | None:
        rows = await self.fetch(
            "SELECT name, partitions, retention FROM sp_streams WHERE name = $1", name
        )
        return StreamSpec(rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def streams(self) -> list[StreamSpec]:
        rows = await self.fetch("SELECT name, partitions, retention FROM sp_streams ORDER BY name")
        return [StreamSpec(n, p, r) for n, p, r in rows]

    async def declare_stream(self, spec: StreamSpec) -> None:
        """Record a stream (its JetStream streams exist already), or check the existing one."""

        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO sp_streams(name, partitions, retention) VALUES ($1, $2, $3) "
                    "ON CONFLICT (name) DO NOTHING",
                    spec.name,
                    spec.partitions,
                    spec.retention,
                )
                partitions = await conn.fetchval(
                    "SELECT partitions FROM sp_streams WHERE name = $1 FOR UPDATE", spec.name
                )
                if partitions != spec.partitions:
                    raise ConfigError(
                        f"stream {spec.name!r} exists with {partitions} partitions, "
                        f"declared with {spec.partitions}"
                    )
                await conn.execute(
                    "UPDATE sp_streams SET retention = $2 WHERE name = $1",
                    spec.name,
                    spec.retention,
                )
                await conn.execute(
                    "INSERT INTO sp_partitions(stream, part) "
                    "SELECT $1, p FROM generate_series(0, $2 - 1) AS p ON CONFLICT DO NOTHING",
                    spec.name,
                    spec.partitions,
                )

        await self.call(run)

    async def drop_stream(self, name: str) -> None:
        """Forget a stream: its partitions, pending outbox rows, offsets and members."""

        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for table in ("sp_outbox", "sp_partitions", "sp_offsets", "sp_members"):
                    await conn.execute(f"DELETE FROM {table} WHERE stream = $1", name)
                await conn.execute("DELETE FROM sp_streams WHERE name = $1", name)

        await self.call(run)
