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
import itertools
import os
from pathlib import Path

from setpiece.engine.contract import Engine
from setpiece.engine.sqlite.timers import SQLiteTimers
from setpiece.errors import ConfigError

__all__ = ["SQLiteEngine"]

_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA", "OFF")  # PRAGMA synchronous levels


class SQLiteEngine(SQLiteTimers, Engine):
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
