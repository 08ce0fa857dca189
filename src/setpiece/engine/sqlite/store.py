"""The embedded engine's store and unit of work: key-value state with versions, the inbox, and
:meth:`SQLiteStore.commit`, which checks and applies a whole unit in one write transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from setpiece.engine.contract import Store, UnitOfWork
from setpiece.engine.sqlite.bulk import _Bulk, _In
from setpiece.engine.sqlite.events import SQLiteEvents
from setpiece.errors import ConfigError, ConflictError, EngineError, RefusedError

__all__ = ["SQLiteStore"]

_INBOX_INSERT = _Bulk(
    "INSERT OR IGNORE INTO sp_inbox(consumer, event_id, ts) VALUES ",
    "(?1, {0}, ?2)",
    "",
    shared=2,
    width=1,
)
_INBOX_SEEN = _In("SELECT event_id FROM sp_inbox WHERE consumer = ?1 AND event_id IN (", shared=1)
_KV_UPSERT = _Bulk(
    "INSERT INTO sp_kv(ns, key, value, version) VALUES ",
    "(?1, {0}, {1}, ?2)",
    " ON CONFLICT(ns, key) DO UPDATE SET value = excluded.value, version = excluded.version",
    shared=2,
    width=2,
)
_KV_DELETE = _In("DELETE FROM sp_kv WHERE ns = ?1 AND key IN (", shared=1)
_KV_GET = _In("SELECT key, value, version FROM sp_kv WHERE ns = ?1 AND key IN (", shared=1)
_KV_VERSIONS = _In("SELECT key, version FROM sp_kv WHERE ns = ?1 AND key IN (", shared=1)
_KV_GET_ONE = "SELECT value, version FROM sp_kv WHERE ns = ? AND key = ?"


class SQLiteStore(SQLiteEvents, Store):
    """The store rung of :class:`~setpiece.engine.sqlite.SQLiteEngine`."""

    async def kv_get(self, namespace: str, keys: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        db = self._db
        if len(keys) == 1:  # the runtime reads keys one by one
            key = keys[0]
            row = db.execute(_KV_GET_ONE, (namespace, key)).fetchone()
            return {} if row is None else {key: (row[0], row[1])}
        if not keys:
            return {}
        return {
            key: (value, version) for key, value, version in _KV_GET.rows(db, [namespace], keys)
        }

    async def kv_scan(
        self, namespace: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        rows = self._db.execute(
            "SELECT key, value FROM sp_kv WHERE ns = ? AND key >= ? AND substr(key, 1, ?) = ? "
            "ORDER BY key LIMIT ?",
            (namespace, prefix, len(prefix), prefix, limit),
        ).fetchall()
        return [(k, v) for k, v in rows]

    async def inbox_seen(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        db = self._db
        if not event_ids:
            return set()
        return {row[0] for row in _INBOX_SEEN.rows(db, [consumer], event_ids)}

    async def prune_inbox(self, before: float) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM sp_inbox WHERE ts < ?", (before,)).rowcount

    async def commit(self, work: UnitOfWork) -> list[tuple[str, int, int]]:
        if work.empty():
            return []
        for stream in dict.fromkeys(append[0] for append in work.appends):
            self._stream(stream)  # an unknown stream: ConfigError before anything is written
        try:
            with self._write() as db:
                self._check(db, work)
                if work.events:
                    self._append_events(db, work.events)
                out = self._apply(db, work)
        except (ConfigError, EngineError):
            raise
        except (ValueError, OverflowError, sqlite3.DataError, sqlite3.InterfaceError) as exc:
            # A value SQLite cannot bind or hold (a string with lone surrogates, ...).
            raise RefusedError(f"SQLite refused the unit of work: {exc}") from None
        if out:
            self._wake()
        return out

    def _check(self, db: sqlite3.Connection, work: UnitOfWork) -> None:
        if work.reads:
            by_ns: dict[str, dict[str, int]] = {}
            for read in work.reads:
                by_ns.setdefault(read.namespace, {})[read.key] = read.version
            for ns, expected in by_ns.items():
                current: dict[str, int] = dict(_KV_VERSIONS.rows(db, [ns], list(expected)))
                for key, version in expected.items():
                    if current.get(key, 0) != version:
                        raise ConflictError(f"store {ns!r}: key {key!r} changed concurrently")
        for oc in work.offsets:
            sid, parts = self._stream(oc.stream)
            if not 0 <= oc.partition < parts:
                raise ConfigError(f"stream {oc.stream!r} has no partition {oc.partition}")
            row = db.execute(
                "SELECT off FROM sp_offsets WHERE grp = ? AND sid = ? AND part = ?",
                (oc.group, sid, oc.partition),
            ).fetchone()
            current_off = row[0] if row else 0
            if current_off != oc.from_offset:
                raise ConflictError(
                    f"group {oc.group!r} on {oc.stream!r}[{oc.partition}]: committed offset is "
                    f"{current_off}, expected {oc.from_offset}"
                )
        if work.inbox:
            now = time.time()
            consumer = work.inbox[0][0]
            ids = [e for c, e in work.inbox if c == consumer]  # one consumer: the usual case
            by_consumer = {consumer: ids}
            if len(ids) != len(work.inbox):
                by_consumer = {}
                for c, e in work.inbox:
                    by_consumer.setdefault(c, []).append(e)
            before = db.total_changes
            for consumer, ids in by_consumer.items():
                _INBOX_INSERT.run(db, [consumer, now], ids)
            if db.total_changes - before != len(work.inbox):
                raise ConflictError("inbox: an event was already processed by this consumer")
        for timer in work.fired:
            gone = db.execute(
                "DELETE FROM sp_timers WHERE ns = ? AND id = ? AND due = ?",
                (timer.namespace, timer.id, timer.due),
            ).rowcount
            if gone != 1:
                raise ConflictError(f"timer {timer.namespace}/{timer.id} was already fired")

    def _apply(self, db: sqlite3.Connection, work: UnitOfWork) -> list[tuple[str, int, int]]:
        if work.writes:
            seq = db.execute(
                "UPDATE sp_seq SET value = value + 1 WHERE id = 0 RETURNING value"
            ).fetchone()[0]
            last = {(w.namespace, w.key): w.value for w in work.writes}  # the last write wins
            upserts: dict[str, list[Any]] = {}
            deletes: dict[str, list[str]] = {}
            for (ns, key), value in last.items():
                if value is None:
                    deletes.setdefault(ns, []).append(key)
                else:
                    upserts.setdefault(ns, []).extend((key, value))
            for ns, flat in upserts.items():
                _KV_UPSERT.run(db, [ns, seq], flat)
            for ns, keys in deletes.items():
                _KV_DELETE.rows(db, [ns], keys)
        if work.cancel_timers:
            db.executemany("DELETE FROM sp_timers WHERE ns = ? AND id = ?", work.cancel_timers)
        if work.timers:
            db.executemany(
                "INSERT INTO sp_timers(ns, id, due, payload) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(ns, id) DO UPDATE SET due = excluded.due, payload = excluded.payload",
                [(t.namespace, t.id, t.due, t.payload) for t in work.timers],
            )
        if work.offsets:
            db.executemany(
                "INSERT INTO sp_offsets(grp, sid, part, off) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(grp, sid, part) DO UPDATE SET off = excluded.off",
                [
                    (oc.group, self._stream(oc.stream)[0], oc.partition, oc.to_offset)
                    for oc in work.offsets
                ],
            )
        return self._append_rows(db, work.appends) if work.appends else []
