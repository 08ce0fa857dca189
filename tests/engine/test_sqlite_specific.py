"""What only the embedded SQLite engine does: files, reopening, URLs."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from setpiece.engine import (
    KVWrite,
    OffsetCommit,
    StreamSpec,
    Timer,
    UnitOfWork,
    open_engine,
    partition_for,
)
from setpiece.engine.sqlite import SQLiteEngine
from setpiece.errors import ConfigError, EngineError


def _open(url: str) -> SQLiteEngine:
    engine = asyncio.run(open_engine(url))
    assert isinstance(engine, SQLiteEngine)
    return engine


def test_not_sqlite_at_all(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    with pytest.raises(EngineError, match="not a setpiece database"):
        _open(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are my notes"), "the file is left alone"


def test_sqlite_file_of_another_application(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers(name) VALUES ('ada')")
    db.close()
    with pytest.raises(EngineError, match="not a setpiece database") as caught:
        _open(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]
    db.close()


def test_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    asyncio.run(_open(f"sqlite:///{path}").close())
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(EngineError, match="schema version 99"):
        _open(f"sqlite:///{path}")


def test_empty_file_becomes_a_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()

    async def main() -> None:
        engine = await open_engine(f"sqlite:///{path}")
        await engine.create_stream(StreamSpec("s", 1))
        await engine.close()

    asyncio.run(main())
    assert path.stat().st_size > 0


def test_creates_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.db"
    asyncio.run(_open(f"sqlite:///{path}").close())
    assert path.exists()


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    timer = Timer("t", "a", 1234.5, b"payload")

    async def write() -> None:
        engine = await open_engine(url)
        assert engine.url == url
        await engine.create_stream(StreamSpec("orders", 3, retention=60.0))
        await engine.append("orders", [("k", b"one"), ("k", b"two"), (None, b"three")])
        await engine.commit(
            UnitOfWork(
                writes=[KVWrite("state", "a", b"1")],
                offsets=[OffsetCommit("g", "orders", 1, 0, 2)],
                inbox=[("svc", "e1")],
                timers=[timer],
            )
        )
        await engine.close()

    async def read() -> None:
        engine = await open_engine(url)
        try:
            assert await engine.streams() == [StreamSpec("orders", 3, retention=60.0)]
            assert sum(await engine.end_offsets("orders")) == 3
            assert await engine.committed("g", "orders") == {0: 0, 1: 2, 2: 0}
            assert (await engine.kv_get("state", ["a"]))["a"][0] == b"1"
            assert await engine.inbox_seen("svc", ["e1"]) == {"e1"}
            assert await engine.timers("t") == [timer]
            assert await engine.groups() == [("g", "orders")]
            before = await engine.end_offsets("orders")
            positions = await engine.append("orders", [("k", b"four")])
            partition = partition_for("k", 3)
            assert positions[0] == (partition, before[partition]), "offsets go on from the end"
            assert before[partition] >= 2
        finally:
            await engine.close()

    asyncio.run(write())
    asyncio.run(read())


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    asyncio.run(_open(f"sqlite:///{path}").close())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA application_id").fetchone()[0] != 0
    db.close()


@pytest.mark.parametrize("url", ["memory", ":memory:", "sqlite://:memory:", "sqlite:///:memory:"])
def test_memory_urls(url: str) -> None:
    engine = _open(url)
    assert engine.url == "memory"
    asyncio.run(engine.close())


def test_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = _open("sqlite:///rel.db")
    assert engine.url == "sqlite:///rel.db"
    asyncio.run(engine.close())
    assert (tmp_path / "rel.db").exists()
    engine = _open(f"sqlite:///{tmp_path / 'abs.db'}")
    assert engine.url == f"sqlite:///{tmp_path / 'abs.db'}"
    assert engine.url.startswith("sqlite:////")
    asyncio.run(engine.close())


def test_synchronous_option(tmp_path: Path) -> None:
    engine = _open(f"sqlite:///{tmp_path / 'full.db'}?synchronous=full")
    assert engine._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    asyncio.run(engine.close())


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/file.db",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db?synchronous=normal;DROP",
        "sqlite:///x.db?synchronus=full",
        "sqlite:///x.db?journal",
        "postgres://localhost/db",
        "file.db",
        "",
    ],
)
def test_bad_urls(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        asyncio.run(open_engine(url))
    assert repr(url) in str(caught.value), "the error names the URL"
    assert not (tmp_path / "x.db").exists(), "a bad URL creates no file"


def test_nats_needs_a_store() -> None:
    with pytest.raises(ConfigError, match="store"):
        asyncio.run(open_engine("nats://localhost:4222"))
