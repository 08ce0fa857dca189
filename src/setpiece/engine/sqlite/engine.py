"""The embedded engine: every rung of the contract on one SQLite file (or in memory).

One connection per process, in WAL mode, used straight from the event loop: each call is a few
microseconds of C, and batching (many records per transaction, one transaction per unit of work)
is what makes it fast. ``synchronous=NORMAL``: a process crash (even SIGKILL) loses nothing that
was committed; a power cut may lose the last transactions. Add ``?synchronous=full`` to the URL
to fsync every commit.

Several processes may share one file: SQLite serialises their writes, consumer groups assign
partitions across them, and compare-and-set on offsets keeps their effects exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from setpiece.engine._records import records
from setpiece.engine.contract import (
    Assignment,
    Engine,
    Record,
    StreamSpec,
    Timer,
    UnitOfWork,
    partition_for,
)
from setpiece.engine.sqlite.schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION
from setpiece.errors import ConfigError, ConflictError, EngineError, RefusedError

__all__ = ["SQLiteEngine"]

_CROSS_PROCESS_POLL = 0.02  # seconds between looks for other processes' appends
_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA", "OFF")  # PRAGMA synchronous levels
_MAX_ROWS = 256  # rows per multi-row statement (and keys per IN list): a power of two
_MAX_PARAMS = 999  # the smallest SQLITE_MAX_VARIABLE_NUMBER of any SQLite build (before 3.32)
_CACHED_STATEMENTS = 256  # every size class of every bulk statement fits the statement cache


class _Bulk:
    """One statement over many rows: ``head``, then ``n`` row groups, then ``tail``.

    ``executemany`` binds, steps and resets once per row, a few microseconds of Python-level
    work each; one statement over many rows pays that once. Parameters ``?1`` .. ``?{shared}``
    are bound once per statement (a consumer, a timestamp, a stream id); each row adds ``width``
    more, written ``{0}``, ``{1}``, ... in ``row``. Row counts are split into powers of two, so a
    statement has a few (cached, prepared-once) shapes whatever the batch size.
    """

    __slots__ = ("_head", "_row", "_shared", "_sql", "_tail", "max_rows", "width")

    def __init__(self, head: str, row: str, tail: str, *, shared: int, width: int) -> None:
        self._head = head
        self._row = row
        self._tail = tail
        self._shared = shared
        self.width = width
        rows = _MAX_ROWS
        while shared + rows * width > _MAX_PARAMS:
            rows //= 2
        self.max_rows = rows
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        found = self._sql.get(rows)
        if found is None:
            width, first = self.width, self._shared + 1
            groups = ", ".join(
                self._row.format(*(f"?{first + r * width + c}" for c in range(width)))
                for r in range(rows)
            )
            found = self._sql[rows] = f"{self._head}{groups}{self._tail}"
        return found

    def run(self, db: sqlite3.Connection, shared: list[Any], flat: list[Any]) -> None:
        """Execute over every row of ``flat`` (the rows' parameters, one after another)."""
        width = self.width
        total = len(flat) // width
        step = self.max_rows
        done = 0
        while done < total:
            while step > total - done:
                step //= 2
            if done == 0 and step == total:
                db.execute(self.sql(step), shared + flat)
            else:
                db.execute(self.sql(step), shared + flat[done * width : (done + step) * width])
            done += step


class _In:
    """``... IN (?, ?, ...)`` over many values: the list is padded (with its last value) to a
    power of two, so each query has one of a few cached shapes; duplicates in IN are harmless."""

    __slots__ = ("_head", "_shared", "_sql", "_tail")

    def __init__(self, head: str, tail: str = ")", *, shared: int) -> None:
        self._head = head
        self._tail = tail
        self._shared = shared
        self._sql: dict[int, str] = {}

    def _shape(self, size: int) -> str:
        found = self._sql.get(size)
        if found is None:
            first = self._shared + 1
            marks = ", ".join(f"?{first + i}" for i in range(size))
            found = self._sql[size] = f"{self._head}{marks}{self._tail}"
        return found

    def rows(self, db: sqlite3.Connection, shared: list[Any], values: Sequence[Any]) -> list[Any]:
        """Run the statement over every value (``_MAX_ROWS`` at a time); the rows it returns."""
        out: list[Any] = []
        for start in range(0, len(values), _MAX_ROWS):
            chunk = list(values[start : start + _MAX_ROWS])
            size = 1
            while size < len(chunk):
                size *= 2
            chunk.extend(itertools.repeat(chunk[-1], size - len(chunk)))
            out += db.execute(self._shape(size), shared + chunk).fetchall()
        return out


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
_RECORD_INSERT = _Bulk(
    "INSERT INTO sp_records(sid, part, off, key, ts, value) VALUES ",
    "(?1, {0}, {1}, {2}, ?2, {3})",
    "",
    shared=2,
    width=4,
)
_READ = (
    "SELECT off, key, value, ts FROM sp_records "
    "WHERE sid = ? AND part = ? AND off >= ? ORDER BY off LIMIT ?"
)
_END_OFFSETS = "SELECT end_off FROM sp_partitions WHERE sid = ? ORDER BY part"
_SET_END_OFFSET = "UPDATE sp_partitions SET end_off = ? WHERE sid = ? AND part = ?"
_KV_GET_ONE = "SELECT value, version FROM sp_kv WHERE ns = ? AND key = ?"


class SQLiteEngine(Engine):
    """The embedded engine. Open it with :func:`setpiece.engine.open_engine`."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self.url = "memory" if path == ":memory:" else f"sqlite:///{path}"
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(
                f"synchronous: must be one of {', '.join(_SYNCHRONOUS).lower()}, "
                f"got {synchronous!r}"
            )
        self._path = path
        self._closed = False
        self._conn = self._connect(path, synchronous)
        self._streams: dict[str, tuple[int, int]] = {}  # name -> (id, partitions)
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._appended = asyncio.Event()
        self._data_version = self._pragma("data_version")

    # -- opening ----------------------------------------------------------------------------

    @staticmethod
    def _connect(path: str, synchronous: str) -> sqlite3.Connection:
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=_CACHED_STATEMENTS,
            )
        except sqlite3.Error as exc:
            raise EngineError(f"{path}: cannot open ({exc})") from None
        try:
            SQLiteEngine._prepare(db, path, synchronous)
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise EngineError(f"{path}: cannot open ({exc})") from None
            if isinstance(exc, sqlite3.DatabaseError):  # "file is not a database"
                raise EngineError(f"{path}: not a setpiece database ({exc})") from None
            raise
        return db

    @staticmethod
    def _prepare(db: sqlite3.Connection, path: str, synchronous: str) -> None:
        db.execute("PRAGMA busy_timeout = 10000")
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            raise EngineError(
                f"{path}: not a setpiece database (it holds other tables); "
                "point the engine at a new file"
            )
        if path != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if not tables:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                    for statement in SCHEMA:
                        db.execute(statement)
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise EngineError(
                f"{path}: setpiece schema version {version}, this setpiece needs {SCHEMA_VERSION}"
            )

    @property
    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise EngineError(f"{self.url}: engine is closed")
        return self._conn

    def _pragma(self, name: str) -> int:
        return int(self._db.execute(f"PRAGMA {name}").fetchone()[0])

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise EngineError(f"{self._path}: cannot write ({exc})") from None
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):  # a full disk, an I/O error: say what happened
                raise EngineError(f"{self._path}: cannot write ({exc})") from None
            raise

    # -- streams ----------------------------------------------------------------------------

    def _stream(self, name: str) -> tuple[int, int]:
        found = self._streams.get(name)
        if found is None:
            row = self._db.execute(
                "SELECT id, partitions FROM sp_streams WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"stream {name!r} does not exist")
            found = self._streams[name] = (row[0], row[1])
        return found

    async def create_stream(self, spec: StreamSpec) -> None:
        if spec.partitions < 1:
            raise ConfigError(f"stream {spec.name!r}: partitions must be at least 1")
        with self._write() as db:
            row = db.execute(
                "SELECT id, partitions FROM sp_streams WHERE name = ?", (spec.name,)
            ).fetchone()
            if row is not None:
                if row[1] != spec.partitions:
                    raise ConfigError(
                        f"stream {spec.name!r} exists with {row[1]} partitions, "
                        f"declared with {spec.partitions}"
                    )
                db.execute(
                    "UPDATE sp_streams SET retention = ? WHERE id = ?", (spec.retention, row[0])
                )
                self._streams[spec.name] = (row[0], row[1])
                return
            sid = db.execute(
                "INSERT INTO sp_streams(name, partitions, retention) VALUES (?, ?, ?)",
                (spec.name, spec.partitions, spec.retention),
            ).lastrowid
            assert sid is not None
            db.executemany(
                "INSERT INTO sp_partitions(sid, part, start_off, end_off) VALUES (?, ?, 0, 0)",
                [(sid, p) for p in range(spec.partitions)],
            )
            self._streams[spec.name] = (sid, spec.partitions)

    async def drop_stream(self, name: str) -> None:
        """Delete a stream with its records, committed offsets and members (``setpiece apply
        --allow-delete``; not part of the contract). A stream that does not exist is ignored."""
        with self._write() as db:
            row = db.execute("SELECT id FROM sp_streams WHERE name = ?", (name,)).fetchone()
            if row is not None:
                for table in ("sp_records", "sp_partitions", "sp_offsets", "sp_members"):
                    db.execute(f"DELETE FROM {table} WHERE sid = ?", (row[0],))
                db.execute("DELETE FROM sp_streams WHERE id = ?", (row[0],))
        self._streams.pop(name, None)
        self._round_robin.pop(name, None)

    async def drop_group(self, group: str, stream: str) -> None:
        """Forget a consumer group's committed offsets and members on a stream."""
        with self._write() as db:
            row = db.execute("SELECT id FROM sp_streams WHERE name = ?", (stream,)).fetchone()
            if row is not None:
                for table in ("sp_offsets", "sp_members"):
                    db.execute(f"DELETE FROM {table} WHERE grp = ? AND sid = ?", (group, row[0]))

    async def streams(self) -> list[StreamSpec]:
        rows = self._db.execute(
            "SELECT name, partitions, retention FROM sp_streams ORDER BY name"
        ).fetchall()
        return [StreamSpec(n, p, r) for n, p, r in rows]

    def _append_rows(
        self, db: sqlite3.Connection, appends: Sequence[tuple[str, str | None, bytes]]
    ) -> list[tuple[str, int, int]]:
        now = time.time()
        out: list[tuple[str, int, int]] = []
        # stream -> (id, partitions, end offsets read in this transaction, rows' parameters)
        streams: dict[str, tuple[int, int, list[int], list[Any]]] = {}
        for stream, key, value in appends:
            found = streams.get(stream)
            if found is None:
                sid, parts = self._stream(stream)
                ends = [row[0] for row in db.execute(_END_OFFSETS, (sid,))]
                found = streams[stream] = (sid, parts, ends, [])
            _, parts, ends, flat = found
            if key is None:
                counter = self._round_robin.get(stream)
                if counter is None:
                    # Each process starts at a random partition, so short-lived producers
                    # (one event per process) do not all land on partition 0.
                    start = random.randrange(1 << 16)
                    counter = self._round_robin[stream] = itertools.count(start)
                part = next(counter) % parts
            else:
                part = partition_for(key, parts)
            end = ends[part]
            ends[part] = end + 1
            flat += (part, end, key, value)
            out.append((stream, part, end))
        for sid, _, ends, flat in streams.values():
            _RECORD_INSERT.run(db, [sid, now], flat)
            touched = set(flat[0::4])
            db.executemany(_SET_END_OFFSET, [(ends[part], sid, part) for part in touched])
        return out

    async def append(
        self, stream: str, records: Sequence[tuple[str | None, bytes]]
    ) -> list[tuple[int, int]]:
        if not records:
            return []
        self._stream(stream)
        with self._write() as db:
            out = self._append_rows(db, [(stream, k, v) for k, v in records])
        self._wake()
        return [(p, o) for _, p, o in out]

    async def read(self, stream: str, partition: int, offset: int, limit: int) -> list[Record]:
        sid, parts = self._stream(stream)
        if not 0 <= partition < parts:
            raise ConfigError(f"stream {stream!r} has no partition {partition}")
        rows = self._db.execute(_READ, (sid, partition, offset, limit)).fetchall()
        return records(stream, partition, rows)

    def _partition_column(self, stream: str, column: str) -> list[int]:
        sid, _ = self._stream(stream)
        rows = self._db.execute(
            f"SELECT {column} FROM sp_partitions WHERE sid = ? ORDER BY part", (sid,)
        ).fetchall()
        return [r[0] for r in rows]

    async def end_offsets(self, stream: str) -> list[int]:
        return self._partition_column(stream, "end_off")

    async def start_offsets(self, stream: str) -> list[int]:
        return self._partition_column(stream, "start_off")

    async def offsets_for_time(self, stream: str, timestamp: float) -> list[int]:
        sid, parts = self._stream(stream)
        ends = self._partition_column(stream, "end_off")
        found = dict(
            self._db.execute(
                "SELECT part, MIN(off) FROM sp_records WHERE sid = ? AND ts >= ? GROUP BY part",
                (sid, timestamp),
            ).fetchall()
        )
        return [found.get(p, ends[p]) for p in range(parts)]

    async def trim(self, stream: str, before: float) -> int:
        sid, _ = self._stream(stream)
        with self._write() as db:
            dropped = db.execute(
                "DELETE FROM sp_records WHERE sid = ? AND ts < ?", (sid, before)
            ).rowcount
            db.execute(
                "UPDATE sp_partitions SET start_off = COALESCE("
                "(SELECT MIN(off) FROM sp_records r WHERE r.sid = sp_partitions.sid "
                "AND r.part = sp_partitions.part), end_off) WHERE sid = ?",
                (sid,),
            )
        return dropped

    def _wake(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def wait(self, streams: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        appended = self._appended
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(appended.wait(), min(remaining, _CROSS_PROCESS_POLL))
                return
            except TimeoutError:
                pass
            if self._closed:
                return
            version = self._pragma("data_version")
            if version != self._data_version:  # another process committed
                self._data_version = version
                self._wake()  # every waiter of this process, not only the one that looked
                return

    # -- groups -----------------------------------------------------------------------------

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

    # -- store ------------------------------------------------------------------------------

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

    # -- timers -----------------------------------------------------------------------------

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

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._appended.set()
            self._conn.close()


def open_sqlite(target: str, options: dict[str, str]) -> SQLiteEngine:
    """Open ``memory`` or a file path, creating the file (and its folder) if needed.

    ``options`` come from the URL's query; the only one is ``synchronous`` (normal or full).
    """
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; the SQLite engine takes synchronous=")
    synchronous = options.get("synchronous", "normal")
    if target == ":memory:":
        return SQLiteEngine(":memory:", synchronous=synchronous)
    return SQLiteEngine(os.fspath(Path(target).expanduser()), synchronous=synchronous)
