"""Where a view's state lives in the engine's store, and how it is read.

Every view generation (a definition fingerprint, :func:`~setpiece.views.declarations.fingerprint`)
has its own namespaces, so a changed definition starts empty and is rebuilt from the log by a
consumer group of the same generation:

``view:<name>#<fp>``        a table's rows (key -> ``[value, expires_ms]``); an aggregate's
                            windows (``<key>\\x1f<start_ms>`` -> ``[start_ms, end_ms, value,
                            closed]``)
``view:<name>#<fp>:open``   an aggregate's open windows per partition
                            (``<p>\\x1f<key>\\x1f<start_ms>`` -> close time in ms)
``view:<name>#<fp>:meta``   stream time (``t:<p>``) and late events counted (``late:<p>``)
``view:<name>#<fp>:buf``    a sliding aggregate's recent events per key
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from setpiece.bus import Bus, bus_stream_name
from setpiece.engine.contract import Engine
from setpiece.errors import ConfigError, ViewError
from setpiece.event import Event
from setpiece.stream import Stream
from setpiece.views.declarations import (
    Aggregate,
    Join,
    Sliding,
    SourcedView,
    StreamJoin,
    Table,
    TableJoin,
    fingerprint,
)

__all__ = [
    "TENANT", "JoinedReader", "Layout", "ViewReader", "event_ms", "iso", "scoped",
    "source_stream",
]

SEP = "\x1f"
TENANT = "\x1e"  # between a tenant and a key: rows of events with a tenant are that tenant's


def source_stream(source: Stream | Bus) -> str:
    """The stream a view reads or writes: a stream's own, or a bus's backing stream."""
    return bus_stream_name(source.name) if isinstance(source, Bus) else source.name


def scoped(key: str, tenant: str | None) -> str:
    """The stored key of ``key`` for ``tenant`` (the key itself without a tenant)."""
    return key if tenant is None else f"{tenant}{TENANT}{key}"
_encode = msgspec.json.encode
_decode = msgspec.json.decode
_SCAN_ALL = 10_000_000


class Layout:
    """The namespaces and consumer group of one view generation."""

    __slots__ = ("buf", "fp", "group", "meta", "name", "open", "state")

    def __init__(self, view: SourcedView | StreamJoin) -> None:
        self.name = view.name
        self.fp = fingerprint(view)
        base = f"view:{view.name}#{self.fp}"
        self.state, self.open, self.meta, self.buf = base, f"{base}:open", f"{base}:meta", \
            f"{base}:buf"
        # A join keeps no state: its group outlives definition changes (no output twice).
        self.group = (f"view.{view.name}" if isinstance(view, Join)
                      else f"view.{view.name}#{self.fp}")


_iso_cache: dict[int, str] = {}


def iso(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC (``2026-01-01T00:00:00.000Z``)."""
    found = _iso_cache.get(ms)
    if found is None:
        found = datetime.fromtimestamp(ms / 1000, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        if len(_iso_cache) > 10_000:
            _iso_cache.clear()
        _iso_cache[ms] = found
    return found


_seconds_cache: dict[str, int] = {}  # "2026-01-01T00:00:00" -> epoch seconds (bounded)


def event_ms(event: Event) -> int:
    """An event's time in milliseconds since the epoch; ViewError when it has none usable."""
    t = event.time
    if type(t) is str and len(t) == 27 and t[26] == "Z" and t[19] == ".":  # the common form
        head = t[:19]
        seconds = _seconds_cache.get(head)
        if seconds is None:
            seconds = _parse_seconds(head, t)
            if len(_seconds_cache) > 100_000:
                _seconds_cache.clear()
            _seconds_cache[head] = seconds
        frac = t[20:26]
        if frac.isdecimal():
            return seconds * 1000 + int(frac) // 1000
    return _slow_ms(t)


def _parse_seconds(head: str, whole: str) -> int:
    try:
        return int(datetime.fromisoformat(head + "+00:00").timestamp())
    except ValueError:
        raise ViewError(f"time: the event has no usable time ({whole!r})") from None


def _slow_ms(t: Any) -> int:
    if not isinstance(t, str) or not t:
        raise ViewError(f"time: the event has no time (got {t!r}); windows need Event.time")
    try:
        moment = datetime.fromisoformat(t.replace("z", "Z"))
    except ValueError:
        raise ViewError(f"time: the event has no usable time ({t!r})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def table_row(raw: bytes, now_ms: float) -> tuple[bool, Any]:
    """(present, value) of a stored table row, an expired one absent."""
    value, expires = _decode(raw)
    if expires is not None and expires <= now_ms:
        return False, None
    return True, value


class ViewReader:
    """A view's committed state, read from outside a delivery (``rt.view(name)``) or from a
    handler (``ctx.view(name)``: the committed state when the delivery runs).

    Tables: :meth:`get`, :meth:`items`, :meth:`range`. Aggregates: :meth:`windows` (open and
    closed windows of a key), :meth:`items`, :meth:`late`. Reading a join (it has no state)
    is a ConfigError.

    Rows made from events with a tenant belong to that tenant: a reader sees the rows of its
    ``tenant`` only (a handler's ``ctx.view`` those of its event's tenant; the gateway those of
    the token's), and a reader without a tenant sees the rows of events without one.
    """

    def __init__(self, engine: Engine, view: SourcedView, now: Callable[[], float],
                 tenant: str | None = None) -> None:
        if isinstance(view, Join):
            raise ConfigError(f"view {view.name!r} is a join: it keeps no state to read "
                              f"(read its output stream {view.emit_to.name!r})")
        self._engine = engine
        self.view = view
        self.layout = Layout(view)
        self._now = now
        self.tenant = tenant
        self._prefix = "" if tenant is None else f"{tenant}{TENANT}"

    @property
    def name(self) -> str:
        return self.view.name

    def _table(self, what: str) -> Table:
        if not isinstance(self.view, Table):
            raise ConfigError(f"view {self.view.name!r} is an aggregate: {what} reads a table "
                              "(use windows(key))")
        return self.view

    async def get(self, key: str, default: Any = None) -> Any:
        """The row of ``key``, or ``default`` when absent (deleted or expired)."""
        self._table("get")
        _check(key)
        stored = self._prefix + key
        found = await self._engine.kv_get(self.layout.state, [stored])
        if stored not in found:
            return default
        present, value = table_row(found[stored][0], self._now() * 1000)
        return value if present else default

    async def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The present rows among ``keys``."""
        self._table("get_many")
        for key in keys:
            _check(key)
        now = self._now() * 1000
        out: dict[str, Any] = {}
        cut = len(self._prefix)
        stored = [self._prefix + k for k in keys]
        for key, (raw, _) in (await self._engine.kv_get(self.layout.state, stored)).items():
            present, value = table_row(raw, now)
            if present:
                out[key[cut:]] = value
        return out

    async def items(self, prefix: str = "", *, limit: int = 1000) -> list[tuple[Any, Any]]:
        """Rows (tables: ``(key, value)``; aggregates: ``((key, start, end), value)``) whose key
        starts with ``prefix``, in key order, at most ``limit``: one consistent read."""
        if not isinstance(prefix, str):
            raise ConfigError("items: prefix must be a string")
        rows = await self._engine.kv_scan(self.layout.state, self._prefix + prefix, _SCAN_ALL)
        return self._rows(rows, limit)

    async def range(self, start: str, end: str | None = None, *,
                    limit: int = 1000) -> list[tuple[Any, Any]]:
        """Rows with ``start <= key < end`` (no upper bound without ``end``), in key order, at
        most ``limit``, from one consistent read of the store."""
        if not isinstance(start, str) or (end is not None and not isinstance(end, str)):
            raise ConfigError("range: start and end must be strings")
        prefix = _common_prefix(start, end) if end is not None else ""
        rows = await self._engine.kv_scan(self.layout.state, self._prefix + prefix, _SCAN_ALL)
        cut = len(self._prefix)
        chosen = [(k, v) for k, v in rows
                  if k[cut:] >= start and (end is None or k[cut:] < end)]
        return self._rows(chosen, limit)

    def _rows(self, rows: list[tuple[str, bytes]], limit: int) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        cut = len(self._prefix)
        if not cut:  # no tenant: the rows of events without one
            rows = [(k, v) for k, v in rows if TENANT not in k]
        if isinstance(self.view, Table):
            now = self._now() * 1000
            for key, raw in rows:
                present, value = table_row(raw, now)
                if present:
                    out.append((key[cut:], value))
                    if len(out) >= limit:
                        break
            return out
        for key, raw in rows:
            start, end, value, _ = _decode(raw)
            out.append(((key[cut:].rpartition(SEP)[0], iso(start), iso(end)), value))
            if len(out) >= limit:
                break
        return out

    async def windows(self, key: str) -> list[tuple[str, str, Any]]:
        """Every window of ``key``, open and closed: ``[(start, end, value), ...]`` by start
        (ISO-8601 UTC). An open window's value is the fold so far."""
        view = self.view
        if not isinstance(view, Aggregate):
            raise ConfigError(f"view {view.name!r} is a table: windows() reads an aggregate "
                              "(use get(key))")
        _check(key)
        key = self._prefix + key
        rows = await self._engine.kv_scan(self.layout.state, key + SEP, _SCAN_ALL)
        found: dict[int, tuple[int, Any]] = {}
        for _, raw in rows:
            start, end, value, _closed = _decode(raw)
            found[start] = (end, value)
        if isinstance(view.window, Sliding):
            await self._open_sliding(view, view.window, key, found)
        return [(iso(s), iso(e), v) for s, (e, v) in sorted(found.items())]

    async def _open_sliding(self, view: Aggregate, window: Sliding, key: str,
                            found: dict[int, tuple[int, Any]]) -> None:
        raw = (await self._engine.kv_get(self.layout.buf, [key])).get(key)
        if raw is None:
            return
        buffered = [(t, msgspec.convert(e, Event)) for t, e in _decode(raw[0])]
        size = round(window.size * 1000)
        for anchor in sorted({t for t, _ in buffered}):
            if anchor - size in found:
                continue  # closed already
            acc = view.initial()
            for t, event in buffered:
                if anchor - size <= t <= anchor:
                    acc = view.add(acc, event)
            found[anchor - size] = (anchor, acc)

    async def late(self) -> int:
        """Events that came after their window closed (each also dead-lettered)."""
        rows = await self._engine.kv_scan(self.layout.meta, "late:", _SCAN_ALL)
        return sum(int(_decode(v)) for _, v in rows)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _check(key: Any) -> None:
    if not isinstance(key, str):
        raise ConfigError(f"view key: must be a string, got {type(key).__name__}")


class JoinedReader:
    """A :class:`~setpiece.views.TableJoin`, read: both tables' committed rows, joined."""

    def __init__(self, engine: Engine, view: TableJoin, now: Callable[[], float],
                 tenant: str | None = None) -> None:
        self.view = view
        self.tenant = tenant
        self._left = ViewReader(engine, view.left, now, tenant)
        self._right = ViewReader(engine, view.right, now, tenant)

    @property
    def name(self) -> str:
        return self.view.name

    async def get(self, key: str, default: Any = None) -> Any:
        """The joined row of left key ``key``, or ``default``."""
        rows = await self._join([(key, v) for v in [await self._left.get(key, _ABSENT)]
                                 if v is not _ABSENT])
        return rows[0][1] if rows else default

    async def items(self, prefix: str = "", *, limit: int = 1000) -> list[tuple[Any, Any]]:
        """Joined rows whose left key starts with ``prefix``, in key order."""
        return await self._join(await self._left.items(prefix, limit=limit))

    async def range(self, start: str, end: str | None = None, *,
                    limit: int = 1000) -> list[tuple[Any, Any]]:
        """Joined rows with ``start <= left key < end``, in key order."""
        return await self._join(await self._left.range(start, end, limit=limit))

    async def _join(self, lefts: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        view = self.view
        fk = view.foreign_key
        wanted: list[tuple[Any, Any, str | None]] = []
        for key, value in lefts:
            right_key = key if fk is None else fk(value)
            if right_key is not None and not isinstance(right_key, str):
                raise ViewError(f"view {view.name!r}: foreign_key returned "
                                f"{type(right_key).__name__}, not a string")
            wanted.append((key, value, right_key))
        rights = await self._right.get_many(sorted({r for _, _, r in wanted if r is not None}))
        out: list[tuple[Any, Any]] = []
        for key, value, right_key in wanted:
            right = rights.get(right_key) if right_key is not None else None
            if right is None and view.how == "inner":
                continue
            out.append((key, {view.left.name: value, view.right.name: right}
                        if view.combine is None else view.combine(value, right)))
        return out


_ABSENT: Any = object()
