"""The embedded engine's log: streams of partitioned, append-only records in one SQLite file.

An append takes the next offset of its partition in the same write transaction as the records,
so offsets have no gaps. :meth:`SQLiteLog.wait` wakes on this process's appends at once and looks
for other processes' commits (``PRAGMA data_version``) every ``_CROSS_PROCESS_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from setpiece.engine._records import records
from setpiece.engine.contract import Log, Record, StreamSpec, partition_for
from setpiece.engine.sqlite.bulk import _Bulk
from setpiece.engine.sqlite.connection import SQLiteConnection
from setpiece.errors import ConfigError

__all__ = ["SQLiteLog"]

_CROSS_PROCESS_POLL = 0.02  # seconds between looks for other processes' appends

_READ = (
    "SELECT off, key, value, ts FROM sp_records "
    "WHERE sid = ? AND part = ? AND off >= ? ORDER BY off LIMIT ?"
)
_END_OFFSETS = "SELECT end_off FROM sp_partitions WHERE sid = ? ORDER BY part"
_SET_END_OFFSET = "UPDATE sp_partitions SET end_off = ? WHERE sid = ? AND part = ?"
_RECORD_INSERT = _Bulk(
    "INSERT INTO sp_records(sid, part, off, key, ts, value) VALUES ",
    "(?1, {0}, {1}, {2}, ?2, {3})",
    "",
    shared=2,
    width=4,
)


class SQLiteLog(SQLiteConnection, Log):
    """The log rung of :class:`~setpiece.engine.sqlite.SQLiteEngine`."""

    _streams: dict[str, tuple[int, int]]  # name -> (id, partitions)
    _round_robin: dict[str, itertools.count[int]]
    _appended: asyncio.Event
    _data_version: int

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
        """Delete a stream with its records, committed offsets and members (one transaction)."""
        with self._write() as db:
            row = db.execute("SELECT id FROM sp_streams WHERE name = ?", (name,)).fetchone()
            if row is not None:
                for table in ("sp_records", "sp_partitions", "sp_offsets", "sp_members"):
                    db.execute(f"DELETE FROM {table} WHERE sid = ?", (row[0],))
                db.execute("DELETE FROM sp_streams WHERE id = ?", (row[0],))
        self._streams.pop(name, None)
        self._round_robin.pop(name, None)

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
