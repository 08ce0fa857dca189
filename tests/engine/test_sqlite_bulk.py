"""The SQLite engine's bulk statements: batch sizes around every split, odd ids, many namespaces.

The engine writes many rows per statement (split into power-of-two sizes) and pads IN lists;
these tests pin that the results are exactly those of one row at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from setpiece.engine import KVWrite, Record, StreamSpec, UnitOfWork, open_engine, partition_for
from setpiece.engine._records import records
from setpiece.engine.sqlite import SQLiteEngine
from setpiece.engine.sqlite import bulk as sqlite_bulk
from setpiece.engine.sqlite import log as sqlite_log
from setpiece.engine.sqlite import store as sqlite_store
from setpiece.errors import ConflictError

SIZES = [1, 2, 3, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1000]
ODD_IDS = ["", "a\x00b", "\x00", "é", "日本", "🎉", "'", '"', "\\", "a,b", "?", "?1", "%", "_"]


def _run(path: Path, body: Callable[[SQLiteEngine], Awaitable[None]]) -> None:
    async def main() -> None:
        engine = await open_engine(f"sqlite:///{path}")
        assert isinstance(engine, SQLiteEngine)
        try:
            await body(engine)
        finally:
            await engine.close()

    asyncio.run(main())


@pytest.mark.parametrize("size", SIZES)
def test_inbox_sizes(tmp_path: Path, size: int) -> None:
    async def body(engine: SQLiteEngine) -> None:
        ids = [f"e{i}" for i in range(size)]
        await engine.commit(UnitOfWork(inbox=[("c", e) for e in ids[::2]]))
        assert await engine.inbox_seen("c", ids) == set(ids[::2])
        assert await engine.inbox_seen("c", list(reversed(ids)) * 2) == set(ids[::2])
        assert await engine.inbox_seen("other", ids) == set()
        # The last id of a big batch was seen: the whole unit conflicts and writes nothing.
        with pytest.raises(ConflictError):
            await engine.commit(
                UnitOfWork(
                    inbox=[("c", e) for e in ids[1::2]] + [("c", ids[0])],
                    writes=[KVWrite("s", "k", b"v")],
                )
            )
        assert await engine.inbox_seen("c", ids[1::2]) == set()
        assert await engine.kv_get("s", ["k"]) == {}
        await engine.commit(UnitOfWork(inbox=[("c", e) for e in ids[1::2]]))
        assert await engine.inbox_seen("c", ids) == set(ids)

    _run(tmp_path / "db", body)


def test_inbox_duplicate_at_the_end_of_a_big_unit(tmp_path: Path) -> None:
    async def body(engine: SQLiteEngine) -> None:
        ids = [f"e{i}" for i in range(700)]
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(inbox=[("c", e) for e in [*ids, ids[300]]]))
        assert await engine.inbox_seen("c", ids) == set()

    _run(tmp_path / "db", body)


def test_inbox_many_consumers_in_one_unit(tmp_path: Path) -> None:
    async def body(engine: SQLiteEngine) -> None:
        inbox = [(f"c{i % 3}", f"e{i}") for i in range(600)]
        await engine.commit(UnitOfWork(inbox=inbox))
        for c in ("c0", "c1", "c2"):
            expected = {e for consumer, e in inbox if consumer == c}
            assert await engine.inbox_seen(c, [e for _, e in inbox]) == expected
        # The same event id for another consumer is new; for the same consumer it conflicts.
        await engine.commit(UnitOfWork(inbox=[("c1", "e0"), ("c9", "e0")]))
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(inbox=[("c9", "new"), ("c2", "e2")]))
        assert await engine.inbox_seen("c9", ["new"]) == set()

    _run(tmp_path / "db", body)


def test_odd_ids_and_keys(tmp_path: Path) -> None:
    async def body(engine: SQLiteEngine) -> None:
        await engine.commit(
            UnitOfWork(
                inbox=[("c", e) for e in ODD_IDS],
                writes=[KVWrite("ns", k, k.encode()) for k in ODD_IDS],
            )
        )
        assert await engine.inbox_seen("c", [*ODD_IDS, "a", "b", "a\x00"]) == set(ODD_IDS)
        for e in ODD_IDS:
            assert await engine.inbox_seen("c", [e]) == {e}
            with pytest.raises(ConflictError):
                await engine.commit(UnitOfWork(inbox=[("c", e)]))
        got = await engine.kv_get("ns", [*ODD_IDS, "missing"])
        assert {k: v for k, (v, _) in got.items()} == {k: k.encode() for k in ODD_IDS}
        for k in ODD_IDS:
            assert (await engine.kv_get("ns", [k]))[k][0] == k.encode()

    _run(tmp_path / "db", body)


@pytest.mark.parametrize("size", SIZES)
def test_kv_sizes(tmp_path: Path, size: int) -> None:
    async def body(engine: SQLiteEngine) -> None:
        keys = [f"k{i}" for i in range(size)]
        writes = [KVWrite(ns, k, f"{ns}{k}".encode()) for k in keys for ns in ("a", "b")]
        await engine.commit(UnitOfWork(writes=writes))
        a = await engine.kv_get("a", keys)
        assert {k: v for k, (v, _) in a.items()} == {k: f"a{k}".encode() for k in keys}
        assert len({version for _, version in a.values()}) == 1, "one unit, one version"
        # Delete every other key of "a", rewrite the rest, with values that are empty or large.
        writes = [
            KVWrite("a", k, None if i % 2 else b"" if i % 3 else b"x" * 5000)
            for i, k in enumerate(keys)
        ]
        await engine.commit(UnitOfWork(writes=writes))
        a2 = await engine.kv_get("a", keys)
        assert {k: v for k, (v, _) in a2.items()} == {
            k: b"" if i % 3 else b"x" * 5000 for i, k in enumerate(keys) if not i % 2
        }
        assert all(a2[k][1] != a[k][1] for k in a2)
        b = await engine.kv_get("b", keys)
        assert b == {k: (f"b{k}".encode(), a[k][1]) for k in keys}, "b untouched"
        assert await engine.kv_get("a", []) == {}

    _run(tmp_path / "db", body)


@pytest.mark.parametrize("size", SIZES)
def test_append_sizes(tmp_path: Path, size: int) -> None:
    async def body(engine: SQLiteEngine) -> None:
        await engine.create_stream(StreamSpec("x", 3))
        await engine.create_stream(StreamSpec("y", 1))
        appends: list[tuple[str, str | None, bytes]] = [
            ("x" if i % 4 else "y", None if i % 5 == 0 else f"k{i % 7}", f"v{i}".encode())
            for i in range(size)
        ]
        first = await engine.commit(UnitOfWork(appends=appends))
        second = await engine.commit(UnitOfWork(appends=appends))
        for positions in (first, second):
            assert [s for s, _, _ in positions] == [s for s, _, _ in appends]
            for (stream, key, _), (_, part, _) in zip(appends, positions, strict=True):
                if key is not None:
                    assert part == partition_for(key, 3 if stream == "x" else 1)
        # Offsets are dense per partition, in order, and the values read back match.
        for stream, parts in (("x", 3), ("y", 1)):
            ends = await engine.end_offsets(stream)
            for part in range(parts):
                mine = [
                    (o, v)
                    for positions in (first, second)
                    for (s, p, o), (_, _, v) in zip(positions, appends, strict=True)
                    if s == stream and p == part
                ]
                assert [o for o, _ in mine] == list(range(ends[part]))
                records = await engine.read(stream, part, 0, ends[part] + 5)
                assert [(r.offset, r.value) for r in records] == mine
                assert all(
                    type(r) is Record and r.stream == stream and r.partition == part
                    for r in records
                )

    _run(tmp_path / "db", body)


def test_records_builder_matches_the_constructor() -> None:
    rows = [(0, None, b"", 1.5), (1, "k", b"v" * 100, 2.0), (2, "\x00", b"\x00", 0.0)]
    fast = records("s", 3, rows)
    assert fast == [Record("s", 3, o, k, v, t) for o, k, v, t in rows]
    assert all(type(r) is Record for r in fast)
    assert [hash(r) for r in fast] == [hash(Record("s", 3, o, k, v, t)) for o, k, v, t in rows]
    assert records.__name__ == "by_slots", "the fast path is in use"
    with pytest.raises(AttributeError):
        fast[0].offset = 9  # type: ignore[misc]


def test_statement_shapes_are_few(tmp_path: Path) -> None:
    """Power-of-two splits: a handful of statement shapes, all within the statement cache."""

    async def body(engine: SQLiteEngine) -> None:
        await engine.create_stream(StreamSpec("x", 2))
        for n in range(1, 600, 7):
            await engine.commit(
                UnitOfWork(
                    inbox=[("c", f"{n}-{i}") for i in range(n)],
                    writes=[KVWrite("a", f"k{i}", b"v") for i in range(n)],
                    appends=[("x", None, b"v")] * n,
                )
            )
            await engine.inbox_seen("c", [f"{n}-{i}" for i in range(n)])
            await engine.kv_get("a", [f"k{i}" for i in range(n)])

    _run(tmp_path / "db", body)
    bulk = [sqlite_store._INBOX_INSERT, sqlite_store._KV_UPSERT, sqlite_log._RECORD_INSERT]
    lookups = [sqlite_store._INBOX_SEEN, sqlite_store._KV_GET]
    shapes = sum(len(b._sql) for b in bulk) + sum(len(i._sql) for i in lookups)
    assert all(len(b._sql) <= 9 for b in bulk)
    assert all(len(i._sql) <= 9 for i in lookups)
    assert shapes < sqlite_bulk._CACHED_STATEMENTS // 2
