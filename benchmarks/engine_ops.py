"""Per-row cost of the SQLite engine's hot operations, beside raw sqlite3 in the same run.

Each operation runs on a 512-row batch, the runtime's batch size, inside one transaction (one
``commit`` / ``append`` / ``read`` call), on a file database in WAL mode, synchronous=NORMAL.
The baseline is plain ``sqlite3`` running the same statement with ``executemany`` on the
original table layout (a separate file, same pragmas): the least any engine on SQLite can do.

    python benchmarks/engine_ops.py [--rounds 40] [--batch 512]

Engine and raw runs are interleaved round by round; the median round is reported, in µs per row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from setpiece.engine import (
    Engine,
    KVRead,
    KVWrite,
    OffsetCommit,
    StreamSpec,
    UnitOfWork,
    open_engine,
)

RAW_SCHEMA = (
    "CREATE TABLE sp_partitions (sid INTEGER NOT NULL, part INTEGER NOT NULL,"
    " start_off INTEGER NOT NULL, end_off INTEGER NOT NULL, PRIMARY KEY (sid, part)) WITHOUT ROWID",
    "CREATE TABLE sp_records (sid INTEGER NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,"
    " key TEXT, ts REAL NOT NULL, value BLOB NOT NULL, PRIMARY KEY (sid, part, off))",
    "CREATE TABLE sp_offsets (grp TEXT NOT NULL, sid INTEGER NOT NULL, part INTEGER NOT NULL,"
    " off INTEGER NOT NULL, PRIMARY KEY (grp, sid, part)) WITHOUT ROWID",
    "CREATE TABLE sp_kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    " version INTEGER NOT NULL, PRIMARY KEY (ns, key))",
    "CREATE TABLE sp_inbox (consumer TEXT NOT NULL, event_id TEXT NOT NULL, ts REAL NOT NULL,"
    " PRIMARY KEY (consumer, event_id)) WITHOUT ROWID",
    "CREATE INDEX sp_inbox_ts ON sp_inbox(ts)",
)
INBOX_SQL = "INSERT OR IGNORE INTO sp_inbox(consumer, event_id, ts) VALUES (?, ?, ?)"
KV_SQL = (
    "INSERT INTO sp_kv(ns, key, value, version) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(ns, key) DO UPDATE SET value = excluded.value, version = excluded.version"
)
APPEND_SQL = "INSERT INTO sp_records(sid, part, off, key, ts, value) VALUES (?, ?, ?, ?, ?, ?)"
READ_SQL = (
    "SELECT off, key, value, ts FROM sp_records "
    "WHERE sid = ? AND part = ? AND off >= ? ORDER BY off LIMIT ?"
)
PARTITIONS = 4
VALUE = b'{"specversion":"1.0","type":"order_placed","source":"bench",' + b"x" * 200 + b"}"


def _uuid7(n: int) -> str:
    """Time-ordered ids like the runtime's (UUIDv7): a growing prefix, then randomness."""
    h = f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{n:04x}{os.urandom(8).hex()}"
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _raw_connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    for statement in RAW_SCHEMA:
        db.execute(statement)
    db.executemany(
        "INSERT INTO sp_partitions VALUES (1, ?, 0, 0)", [(p,) for p in range(PARTITIONS)]
    )
    return db


def _raw_tx(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany(sql, rows)
    db.execute("COMMIT")


class Bench:
    def __init__(self, engine: Engine, raw: sqlite3.Connection, batch: int) -> None:
        self.engine = engine
        self.raw = raw
        self.batch = batch
        self.counter = 0
        self.raw_offsets = [0] * PARTITIONS
        self.committed = 0

    def ids(self) -> list[str]:
        start = self.counter
        self.counter += self.batch
        return [_uuid7(i & 0xFFFF) for i in range(start, start + self.batch)]

    def keys(self, round_: int) -> list[str]:
        # 4096 keys: the first rounds insert, later rounds update.
        return [f"key-{(round_ * self.batch + i) % 4096:05d}" for i in range(self.batch)]

    def records(self, round_: int) -> list[tuple[str | None, bytes]]:
        return [(f"cu-{(round_ * self.batch + i) % 500}", VALUE) for i in range(self.batch)]

    # -- one round of each operation: (engine seconds, raw seconds) --------------------------

    async def inbox(self, round_: int) -> tuple[float, float]:
        ids = self.ids()
        work = UnitOfWork(inbox=[("bench", e) for e in ids])
        started = time.perf_counter()
        await self.engine.commit(work)
        engine_s = time.perf_counter() - started
        ids = self.ids()
        started = time.perf_counter()
        now = time.time()
        _raw_tx(self.raw, INBOX_SQL, [("bench", e, now) for e in ids])
        return engine_s, time.perf_counter() - started

    async def inbox_seen(self, round_: int) -> tuple[float, float]:
        # Half of the ids were recorded (by the previous inbox rounds), half are new.
        ids = self.ids()[: self.batch // 2]
        known = [
            r[0]
            for r in self.raw.execute(
                "SELECT event_id FROM sp_inbox WHERE consumer = 'bench' LIMIT ? OFFSET ?",
                (self.batch - len(ids), (round_ * 97) % 1000),
            )
        ]
        ids += known
        started = time.perf_counter()
        await self.engine.inbox_seen("bench", ids)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        marks = ",".join("?" * len(ids))
        set(
            r[0]
            for r in self.raw.execute(
                f"SELECT event_id FROM sp_inbox WHERE consumer = ? AND event_id IN ({marks})",
                ("bench", *ids),
            )
        )
        return engine_s, time.perf_counter() - started

    async def kv_upsert(self, round_: int) -> tuple[float, float]:
        keys = self.keys(round_)
        work = UnitOfWork(writes=[KVWrite("ns", k, b"12345") for k in keys])
        started = time.perf_counter()
        await self.engine.commit(work)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        _raw_tx(self.raw, KV_SQL, [("ns", k, b"12345", round_ + 1) for k in keys])
        return engine_s, time.perf_counter() - started

    async def kv_get(self, round_: int) -> tuple[float, float]:
        keys = self.keys(round_ + 3)
        started = time.perf_counter()
        await self.engine.kv_get("ns", keys)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        marks = ",".join("?" * len(keys))
        out = {}
        for key, value, version in self.raw.execute(
            f"SELECT key, value, version FROM sp_kv WHERE ns = ? AND key IN ({marks})",
            ("ns", *keys),
        ):
            out[key] = (value, version)
        return engine_s, time.perf_counter() - started

    async def append(self, round_: int) -> tuple[float, float]:
        records = self.records(round_)
        started = time.perf_counter()
        await self.engine.append("s", records)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        now = time.time()
        offsets = self.raw_offsets
        rows = []
        for i, (key, value) in enumerate(records):
            part = i % PARTITIONS
            rows.append((1, part, offsets[part], key, now, value))
            offsets[part] += 1
        _raw_tx(self.raw, APPEND_SQL, rows)
        return engine_s, time.perf_counter() - started

    async def read(self, round_: int) -> tuple[float, float]:
        part = round_ % PARTITIONS
        offset = (round_ * 37) % 256
        started = time.perf_counter()
        got = await self.engine.read("s", part, offset, self.batch)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        rows = self.raw.execute(READ_SQL, (1, part, offset, self.batch)).fetchall()
        raw_s = time.perf_counter() - started
        assert len(got) == len(rows) == self.batch, (len(got), len(rows))
        return engine_s, raw_s

    async def unit(self, round_: int) -> tuple[float, float]:
        """A runtime batch: inbox + reads + kv writes + appends + one offset CAS."""
        ids = self.ids()
        keys = [f"u-{(round_ * 7 + i) % 1000}" for i in range(64)]
        got = await self.engine.kv_get("u", keys)
        work = UnitOfWork(
            reads=[KVRead("u", k, got[k][1] if k in got else 0) for k in keys],
            writes=[KVWrite("u", k, b"1") for k in keys],
            appends=[("out", f"cu-{i % 500}", VALUE) for i in range(self.batch)],
            offsets=[OffsetCommit("g", "s", 0, self.committed, self.committed + 1)],
            inbox=[("unit", e) for e in ids],
        )
        started = time.perf_counter()
        await self.engine.commit(work)
        engine_s = time.perf_counter() - started
        self.committed += 1
        ids = self.ids()
        now = time.time()
        started = time.perf_counter()
        db = self.raw
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INBOX_SQL, [("unit", e, now) for e in ids])
        db.executemany(KV_SQL, [("u", k, b"1", round_) for k in keys])
        offsets = self.raw_offsets
        rows = []
        for i in range(self.batch):
            part = i % PARTITIONS
            rows.append((2, part, offsets[part], f"cu-{i % 500}", now, VALUE))
            offsets[part] += 1
        db.executemany(APPEND_SQL, rows)
        db.execute(
            "INSERT INTO sp_offsets VALUES ('g', 1, 0, ?) "
            "ON CONFLICT(grp, sid, part) DO UPDATE SET off = excluded.off",
            (self.committed,),
        )
        db.execute("COMMIT")
        return engine_s, time.perf_counter() - started


async def run(tmp: str, rounds: int, batch: int) -> list[tuple[str, float, float]]:
    engine = await open_engine(f"sqlite:///{tmp}/engine.db")
    raw = _raw_connect(f"{tmp}/raw.db")
    try:
        await engine.create_stream(StreamSpec("s", PARTITIONS))
        await engine.create_stream(StreamSpec("out", PARTITIONS))
        bench = Bench(engine, raw, batch)
        ops: list[tuple[str, Callable[[int], Coroutine[Any, Any, tuple[float, float]]]]] = [
            ("inbox insert", bench.inbox),
            ("inbox_seen (lookup)", bench.inbox_seen),
            ("kv upsert", bench.kv_upsert),
            ("kv_get (lookup)", bench.kv_get),
            ("append", bench.append),
            ("read", bench.read),
            ("runtime batch (unit)", bench.unit),
        ]
        results = []
        for name, op in ops:
            for warm in range(3):
                await op(-1 - warm if name != "read" else warm)
            engine_times, raw_times = [], []
            for r in range(rounds):
                e, w = await op(r)
                engine_times.append(e)
                raw_times.append(w)
            results.append(
                (
                    name,
                    statistics.median(engine_times) / batch * 1e6,
                    statistics.median(raw_times) / batch * 1e6,
                )
            )
        return results
    finally:
        await engine.close()
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(run(tmp, args.rounds, args.batch))
    print(
        f"µs per row, {args.batch} rows per transaction, median of {args.rounds} rounds "
        "(SQLite file, WAL, synchronous=NORMAL)"
    )
    print(f"{'operation':<24}{'engine':>10}{'raw sqlite3':>14}{'engine/raw':>12}")
    for name, engine_us, raw_us in results:
        print(f"{name:<24}{engine_us:>10.2f}{raw_us:>14.2f}{engine_us / raw_us:>11.2f}x")


if __name__ == "__main__":
    main()
