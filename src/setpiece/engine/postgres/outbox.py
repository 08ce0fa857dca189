"""The PostgreSQL side of the outbox relay: committed records waiting in ``sp_outbox`` to be
published to JetStream (by :mod:`setpiece.engine.nats.relay`), read and deleted under a
partition's relay lock (a transaction-scoped advisory lock, one relayer per partition)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from setpiece.engine.postgres.connection import PgConnection

__all__ = ["OutboxRow", "PgOutbox", "RelaySession"]

_RELAY_CLASS = 0x5350  # first half of the two-int advisory lock a partition's relayer holds


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A committed record waiting to be published; ``pseq`` is its JetStream sequence."""

    pseq: int
    key: str | None
    value: bytes | None  # None when the relayer holds the value already
    msg_id: str


def _relay_key(schema: str, stream: str, partition: int) -> int:
    digest = hashlib.blake2b(repr((schema, stream, partition)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgOutbox(PgConnection):
    """The outbox of :class:`~setpiece.engine.postgres.PgStore`."""

    @asynccontextmanager
    async def relay_session(
        self, stream: str, partition: int, *, wait: bool
    ) -> AsyncIterator[RelaySession | None]:
        """Hold a partition's relay lock in a transaction; yields None if busy and not ``wait``."""
        async with self._pool.acquire() as conn, conn.transaction():
            key = _relay_key(self.schema, stream, partition)
            if wait:
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _RELAY_CLASS, key)
            elif not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, $2)", _RELAY_CLASS, key
            ):
                yield None
                return
            yield RelaySession(conn, stream, partition)

    async def outbox_rows(
        self, stream: str, partition: int, lo: int, hi: int, limit: int
    ) -> list[OutboxRow]:
        """A partition's outbox rows with ``lo <= pseq <= hi``, oldest first, at most ``limit``
        (no lock: a relayer filling a gap before its own rows)."""
        rows = await self.fetch(
            "SELECT pseq, key, value, msg_id FROM sp_outbox "
            "WHERE stream = $1 AND part = $2 AND pseq BETWEEN $3 AND $4 ORDER BY pseq LIMIT $5",
            stream,
            partition,
            lo,
            hi,
            limit,
        )
        return [OutboxRow(q, k, v, m) for q, k, v, m in rows]

    async def delete_relayed(self, upto: dict[tuple[str, int], int]) -> None:
        """Delete the outbox rows the log holds: per (stream, partition), up to a sequence."""
        items = sorted(upto.items())
        await self.execute(
            "DELETE FROM sp_outbox AS o USING unnest($1::text[], $2::int[], $3::bigint[]) "
            "AS d(s, p, q) WHERE o.stream = d.s AND o.part = d.p AND o.pseq <= d.q",
            [s for (s, _), _ in items],
            [p for (_, p), _ in items],
            [q for _, q in items],
        )

    async def outbox_partitions(self, older_than: float) -> list[tuple[str, int]]:
        rows = await self.fetch(
            "SELECT DISTINCT stream, part FROM sp_outbox WHERE created < $1 ORDER BY 1, 2",
            older_than,
        )
        return [(s, p) for s, p in rows]

    async def committed_ends(self, stream: str, partitions: int) -> list[int]:
        """Per partition, the sequence of the last record committed, relayed to the log or not
        (0: none)."""
        rows = await self.fetch(
            "SELECT part, last_pseq FROM sp_partitions WHERE stream = $1", stream
        )
        ends = [0] * partitions
        for part, last in rows:
            if 0 <= part < partitions:
                ends[part] = int(last)
        return ends

    async def forget_commits(self, before: float) -> int:
        status = await self.execute("DELETE FROM sp_commits WHERE ts < $1", before)
        return int(status.split()[-1])


class RelaySession:
    """The outbox rows of one partition, read and deleted under its relay lock."""

    def __init__(self, conn: asyncpg.Connection, stream: str, partition: int) -> None:
        self._conn = conn
        self.stream = stream
        self.partition = partition

    async def pending(self, limit: int, skip: tuple[int, int] | None = None) -> list[OutboxRow]:
        """The oldest ``limit`` rows, in order; values in the ``skip`` range are not fetched."""
        lo, hi = skip if skip is not None else (0, -1)
        rows = await self._conn.fetch(
            "SELECT pseq, key, CASE WHEN pseq BETWEEN $3 AND $4 THEN NULL ELSE value END, msg_id "
            "FROM sp_outbox WHERE stream = $1 AND part = $2 ORDER BY pseq LIMIT $5",
            self.stream,
            self.partition,
            lo,
            hi,
            limit,
        )
        return [OutboxRow(q, k, v, m) for q, k, v, m in rows]

    async def delete(self, upto: int) -> None:
        await self._conn.execute(
            "DELETE FROM sp_outbox WHERE stream = $1 AND part = $2 AND pseq <= $3",
            self.stream,
            self.partition,
            upto,
        )

    async def last_pseq(self) -> int:
        value = await self._conn.fetchval(
            "SELECT last_pseq FROM sp_partitions WHERE stream = $1 AND part = $2",
            self.stream,
            self.partition,
        )
        return int(value or 0)
