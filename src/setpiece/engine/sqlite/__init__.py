"""The embedded engine on SQLite: ``sqlite:///path/to/file.db`` or ``memory``."""

from setpiece.engine.sqlite.engine import SQLiteEngine, open_sqlite

__all__ = ["SQLiteEngine", "open_sqlite"]
