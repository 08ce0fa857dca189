"""Bulk statements of the embedded engine: one SQL statement over many rows or many keys.

Row and key counts are split (or padded) to powers of two, so each statement has a few shapes,
prepared once and kept in the connection's statement cache (``_CACHED_STATEMENTS``).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

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
