"""The embedded engine's connection: opening a file (creating its schema), and write transactions.

One connection per process, in WAL mode, used straight from the event loop. A file that holds
other tables, or another setpiece schema version, is refused with :class:`EngineError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from setpiece.engine.sqlite.bulk import _CACHED_STATEMENTS
from setpiece.engine.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA, SCHEMA_VERSION
from setpiece.errors import EngineError

__all__ = ["SQLiteConnection"]


class SQLiteConnection:
    """The connection every rung of the embedded engine runs on (:class:`SQLiteEngine` opens
    it in ``__init__``)."""

    url: str
    _path: str
    _closed: bool
    _conn: sqlite3.Connection

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
            SQLiteConnection._prepare(db, path, synchronous)
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
        if version in MIGRATIONS:
            SQLiteConnection._migrate(db)
            version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise EngineError(
                f"{path}: setpiece schema version {version}, this setpiece needs {SCHEMA_VERSION}"
            )

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring a file of an older schema version up to this one (a migration per version)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            while version in MIGRATIONS:  # read again under the lock: another process may
                for statement in MIGRATIONS[version]:  # have migrated meanwhile
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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
