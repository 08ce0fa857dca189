"""The PostgreSQL side of the production engine: state, inbox, offsets, members, timers, outbox.

:class:`PgStore` puts the parts together (:mod:`~setpiece.engine.postgres.connection`,
:mod:`~setpiece.engine.postgres.log`, :mod:`~setpiece.engine.postgres.groups`,
:mod:`~setpiece.engine.postgres.timers`, :mod:`~setpiece.engine.postgres.outbox`); this module
holds its opening, the key-value store, the inbox and the unit-of-work commit.

Every call runs on a pooled asyncpg connection and is retried while PostgreSQL is unreachable
(restarting, failing over) for up to ``timeout`` seconds. Reads and idempotent writes retry
as they are. A unit of work is made safe to retry by its commit id: the transaction records the
id (with the positions it assigned) in ``sp_commits``; when the connection drops with the outcome
unknown, the store looks the id up before trying again, so a commit is applied once.

Transactions run at READ COMMITTED. The keys a unit checks and writes (store keys, committed
offsets) are first locked with transaction-scoped advisory locks, in sorted order, so every
check-then-write is serialised against other units touching the same keys; the other checks are
single atomic statements (inbox ``INSERT .. ON CONFLICT DO NOTHING``, fired timers ``DELETE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from setpiece.engine.contract import UnitOfWork
from setpiece.engine.postgres.connection import CONNECTION_ERRORS, split_store_url
from setpiece.engine.postgres.events import PgEvents, event_args
from setpiece.engine.postgres.groups import PgGroups
from setpiece.engine.postgres.log import PgLog
from setpiece.engine.postgres.outbox import PgOutbox
from setpiece.engine.postgres.schema import COMMIT_FUNCTION, MIGRATIONS, SCHEMA, SCHEMA_VERSION
from setpiece.engine.postgres.timers import PgTimers
from setpiece.engine.retry import UNREACHABLE
from setpiece.errors import ConfigError, ConflictError, EngineError, RefusedError

__all__ = ["CONNECTION_ERRORS", "PgStore", "Placed", "split_store_url"]

_CONFLICTS = (asyncpg.exceptions.TransactionRollbackError,)  # serialization, deadlock
# SQLSTATE classes of a value PostgreSQL will never store (22: data exception, U+0000 in text
# among them; 54: program limit exceeded, an index row too large): the unit is refused.
_REFUSED_CLASSES = ("22", "54")

_SCHEMA_LOCK = 0x5350_5343  # advisory lock id serialising schema creation
_CONFLICT_STATE = "SPC01"  # raised by sp_commit_v2: a check failed
_UNIQUE_STATE = "23505"  # a unique violation: two writers raced on one event version
_NO_PARTITION_STATE = "SPC02"  # raised by sp_commit_v2: an append names no partition
_COMMIT_SQL = "SELECT sp_commit_v2(" + ", ".join(f"${i}" for i in range(1, 42)) + ")"


@dataclass(frozen=True, slots=True)
class Placed:
    """An append with its partition chosen."""

    stream: str
    partition: int
    key: str | None
    value: bytes


def _lock_key(schema: str, *parts: object) -> int:
    digest = hashlib.blake2b(repr((schema, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _no_reset(_conn: Any) -> None:
    """Pool connections hold no session state (no LISTEN, SET or session locks)."""


class PgStore(PgEvents, PgLog, PgGroups, PgTimers, PgOutbox):
    """PostgreSQL state for one engine: everything but the log itself."""

    def __init__(self, url: str, pool: asyncpg.Pool, schema: str, *, retry_for: float) -> None:
        self.url = url
        self._pool = pool
        self.schema = schema
        self.retry_for = retry_for
        self._closed = False
        # Concurrent kv_get calls, answered together: (namespace, keys, future) per call.
        self._kv_queue: list[tuple[str, list[str], asyncio.Future[dict[str, tuple[bytes, int]]]]]
        self._kv_queue = []
        self._kv_rounds: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, *, prefix: str, retry_for: float = 30.0, max_size: int = 10
    ) -> PgStore:
        dsn, schema = split_store_url(url)
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_size,
                reset=_no_reset,
                server_settings={
                    "search_path": schema,
                    "application_name": "setpiece",
                },
            )
        except CONNECTION_ERRORS as exc:
            raise EngineError(f"PostgreSQL at {dsn!r} is unreachable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise EngineError(f"PostgreSQL at {dsn!r}: {exc}") from exc
        store = cls(url, pool, schema, retry_for=retry_for)
        try:
            await store._ensure_schema(prefix)
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._kv_rounds is not None:
                self._kv_rounds.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._kv_rounds
            await self._pool.close()

    async def _ensure_schema(self, prefix: str) -> None:
        async def ensure(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                exists = await conn.fetchval(
                    "SELECT to_regclass($1) IS NOT NULL", f'"{self.schema}".sp_meta'
                )
                if not exists:
                    for statement in SCHEMA:
                        await conn.execute(statement)
                    await conn.executemany(
                        "INSERT INTO sp_meta(key, value) VALUES ($1, $2)",
                        [("schema_version", str(SCHEMA_VERSION)), ("nats_prefix", prefix)],
                    )
                meta = dict(await conn.fetch("SELECT key, value FROM sp_meta"))
                while meta.get("schema_version") in MIGRATIONS:
                    old = meta["schema_version"]
                    for statement in MIGRATIONS[old]:
                        await conn.execute(statement)
                    meta["schema_version"] = str(int(old) + 1)
                    await conn.execute(
                        "UPDATE sp_meta SET value = $1 WHERE key = 'schema_version'",
                        meta["schema_version"],
                    )
                if meta.get("schema_version") == str(SCHEMA_VERSION):
                    await conn.execute(COMMIT_FUNCTION)
            if meta.get("schema_version") != str(SCHEMA_VERSION):
                raise EngineError(
                    f"PostgreSQL schema {self.schema!r} has setpiece schema version "
                    f"{meta.get('schema_version')}, this setpiece needs {SCHEMA_VERSION}"
                )
            if meta.get("nats_prefix") != prefix:
                raise ConfigError(
                    f"PostgreSQL schema {self.schema!r} belongs to NATS prefix "
                    f"{meta.get('nats_prefix')!r}, not {prefix!r}: one schema per prefix"
                )

        await self.call(ensure)

    # -- key-value, inbox -------------------------------------------------------------------

    async def kv_get(self, namespace: str, keys: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        """The present keys with (value, version).

        Calls made while a read is on its way to PostgreSQL (deliveries running concurrently
        each read their own key) are answered together by the next single query: one round
        trip per round, however many callers. Every caller's future is settled by the task
        that took it from the queue, with the rows or with the round's error; one that is
        still queued when the task ends (the store closing) gets ``EngineError``.
        """
        self.check_open()
        if not keys:
            return {}
        if "\0" in namespace or any("\0" in key for key in keys):
            # Refused here, for this caller alone: concurrent callers' reads share one query.
            raise RefusedError("store: PostgreSQL cannot hold U+0000 in a namespace or key")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, tuple[bytes, int]]] = loop.create_future()
        self._kv_queue.append((namespace, list(keys), future))
        if self._kv_rounds is None:
            self._kv_rounds = loop.create_task(self._run_kv_rounds(), name="setpiece-kv-reads")
        return await future

    async def _run_kv_rounds(self) -> None:
        try:
            await asyncio.sleep(0)  # the callers of this loop turn join the first round
            while self._kv_queue:
                calls, self._kv_queue = self._kv_queue, []
                try:
                    found = await self._kv_fetch(calls)
                except Exception as exc:
                    for _, _, future in calls:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for _, _, future in calls:
                        if not future.done():
                            future.set_exception(EngineError("engine is closed"))
                    raise
                for namespace, keys, future in calls:
                    if not future.done():
                        future.set_result(
                            {k: found[(namespace, k)] for k in keys if (namespace, k) in found}
                        )
        finally:
            self._kv_rounds = None
            calls, self._kv_queue = self._kv_queue, []
            for _, _, future in calls:  # only when ended by cancellation (closing)
                if not future.done():
                    future.set_exception(EngineError("engine is closed"))

    async def _kv_fetch(
        self, calls: list[tuple[str, list[str], Any]]
    ) -> dict[tuple[str, str], tuple[bytes, int]]:
        wanted = list(dict.fromkeys((ns, k) for ns, keys, _ in calls for k in keys))
        rows = await self.fetch(
            "SELECT kv.ns, kv.key, kv.value, kv.version "
            "FROM unnest($1::text[], $2::text[]) AS t(ns, key) "
            "CROSS JOIN LATERAL (SELECT ns, key, value, version FROM sp_kv "
            "WHERE sp_kv.ns = t.ns AND sp_kv.key = t.key) AS kv",
            [ns for ns, _ in wanted],
            [k for _, k in wanted],
        )
        return {(ns, k): (v, ver) for ns, k, v, ver in rows}

    async def kv_scan(
        self, namespace: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        rows = await self.fetch(
            "SELECT key, value FROM sp_kv WHERE ns = $1 AND key >= $2 "
            "AND left(key, char_length($2)) = $2 ORDER BY key LIMIT $3",
            namespace,
            prefix,
            limit,
        )
        return [(k, v) for k, v in rows]

    async def inbox_seen(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        self.check_open()
        if not event_ids:
            return set()
        rows = await self.fetch(
            "SELECT event_id FROM sp_inbox WHERE consumer = $1 AND event_id = ANY($2::text[])",
            consumer,
            list(event_ids),
        )
        return {r[0] for r in rows}

    async def prune_inbox(self, before: float) -> int:
        status = await self.execute("DELETE FROM sp_inbox WHERE ts < $1", before)
        return int(status.split()[-1])

    # -- units of work ----------------------------------------------------------------------

    async def commit(
        self, work: UnitOfWork, placed: Sequence[Placed]
    ) -> tuple[list[tuple[str, int, int]], str]:
        """Apply a unit of work in one transaction; returns (positions, commit id).

        Positions are (stream, partition, offset) per append, in order. The records are in the
        outbox, not yet in the log: the caller relays them.
        """
        commit_id = uuid.uuid4()
        args = self._commit_args(work, placed)
        backoff = UNREACHABLE.backoff(self.retry_for)
        unknown = False  # an attempt's outcome was lost with its connection
        while True:
            self.check_open()
            try:
                async with self._pool.acquire() as conn:
                    try:
                        positions = await self._apply(conn, commit_id, args)
                    except _CONFLICTS as exc:
                        raise ConflictError(f"transaction lost a race: {exc}") from None
                    except asyncpg.PostgresError as exc:
                        state = getattr(exc, "sqlstate", None) or ""
                        if state in (_CONFLICT_STATE, _UNIQUE_STATE):
                            raise ConflictError(str(exc)) from None
                        if state == _NO_PARTITION_STATE:
                            raise ConfigError(str(exc)) from None
                        if state[:2] in _REFUSED_CLASSES:
                            nul = " (U+0000 in a text value)" if "0x00" in str(exc) else ""
                            raise RefusedError(f"PostgreSQL refused the unit: {exc}{nul}") from None
                        raise
                    except (asyncpg.exceptions.DataError, UnicodeError) as exc:
                        raise RefusedError(f"PostgreSQL refused the unit: {exc}") from None
                    return positions, str(commit_id)
            except ConflictError:
                if unknown:  # an earlier attempt whose reply was lost may have committed
                    found = await self._committed_positions(commit_id)
                    if found is not None:
                        return found, str(commit_id)
                raise
            except CONNECTION_ERRORS as exc:
                # The outcome is unknown: look for the commit id before trying again.
                unknown = True
                if not await backoff.pause():
                    raise EngineError(
                        f"PostgreSQL unreachable; commit {commit_id} outcome unknown: {exc}"
                    ) from exc
                try:
                    found = await self._committed_positions(commit_id)
                except EngineError:
                    continue
                if found is not None:
                    return found, str(commit_id)

    async def _committed_positions(self, commit_id: uuid.UUID) -> list[tuple[str, int, int]] | None:
        rows = await self.fetch("SELECT positions FROM sp_commits WHERE id = $1", commit_id)
        if not rows:
            return None
        decoded = msgspec.json.decode(rows[0][0], type=list[tuple[str, int, int]])
        return decoded

    def _commit_args(self, work: UnitOfWork, placed: Sequence[Placed]) -> list[object]:
        """The arguments of ``sp_commit_v2`` after the commit id and the time."""
        schema = self.schema
        sequences, events = event_args(work.events)
        locks = {_lock_key(schema, "kv", r.namespace, r.key) for r in work.reads}
        locks.update(_lock_key(schema, "ev", ns, id_) for ns, id_ in sequences)
        locks.update(_lock_key(schema, "kv", w.namespace, w.key) for w in work.writes)
        locks.update(_lock_key(schema, "off", o.group, o.stream, o.partition) for o in work.offsets)
        final: dict[tuple[str, str], bytes | None] = {}
        for w in work.writes:  # the last write of a key wins
            final[(w.namespace, w.key)] = w.value
        sets = [(ns, k, v) for (ns, k), v in final.items() if v is not None]
        dels = [(ns, k) for (ns, k), v in final.items() if v is None]
        timers = {(t.namespace, t.id): t for t in work.timers}
        moves = {(o.group, o.stream, o.partition): o.to_offset for o in work.offsets}
        return [
            sorted(locks),
            [r.namespace for r in work.reads],
            [r.key for r in work.reads],
            [r.version for r in work.reads],
            [o.group for o in work.offsets],
            [o.stream for o in work.offsets],
            [o.partition for o in work.offsets],
            [o.from_offset for o in work.offsets],
            [c for c, _ in work.inbox],
            [e for _, e in work.inbox],
            [t.namespace for t in work.fired],
            [t.id for t in work.fired],
            [t.due for t in work.fired],
            [s[0] for s in sets],
            [s[1] for s in sets],
            [s[2] for s in sets],
            [d[0] for d in dels],
            [d[1] for d in dels],
            [ns for ns, _ in work.cancel_timers],
            [i for _, i in work.cancel_timers],
            [t.namespace for t in timers.values()],
            [t.id for t in timers.values()],
            [t.due for t in timers.values()],
            [t.payload for t in timers.values()],
            [g for g, _, _ in moves],
            [s for _, s, _ in moves],
            [p for _, _, p in moves],
            list(moves.values()),
            [p.stream for p in placed],
            [p.partition for p in placed],
            [p.key for p in placed],
            [p.value for p in placed],
            *events,
        ]

    async def _apply(
        self, conn: asyncpg.Connection, commit_id: uuid.UUID, args: Sequence[object]
    ) -> list[tuple[str, int, int]]:
        """The whole unit in one statement (``sp_commit_v2``, one implicit transaction): the
        advisory locks on every key it reads or writes and every offset it commits, in sorted
        order; the checks (versions, offsets, inbox, fired timers), any miss raising SPC01 and
        rolling everything back; the writes; the appends, numbered per partition last in the
        transaction; the row in ``sp_commits``. One round trip whatever the unit holds."""
        raw = await conn.fetchval(_COMMIT_SQL, commit_id, time.time(), *args)
        positions = msgspec.json.decode(raw, type=list[tuple[str, int, int]])
        return positions
