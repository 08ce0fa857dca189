"""View declarations: tables, joins and windowed aggregates, as plain data.

A view is declared beside the stack's streams and buses and materialised by the runtime (the
views extension, :mod:`setpiece.views._extension`). This module imports nothing of the engine or
the runtime: a declaration is checked when it is made (and against the stack when the stack is
built), and does nothing by itself.

::

    profile_table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    per_store = Aggregate("per_store", orders, key=lambda e: e.data["store"],
                          window=Tumbling(60, grace=10),
                          initial=lambda: 0, add=lambda acc, e: acc + e.data["amount"],
                          emit_to=totals)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from setpiece.bus import Bus, compile_pattern
from setpiece.errors import ConfigError
from setpiece.event import Event
from setpiece.patterns import Pattern
from setpiece.stream import Stream, check_name

__all__ = [
    "Aggregate", "Hopping", "Join", "Session", "Sliding", "Source", "SourcedView", "StreamJoin",
    "Table", "TableJoin", "Tumbling", "View", "Window", "fingerprint",
]

#: Where a view reads from: a stream, or a bus (with ``pattern=`` choosing its events).
Source = Stream | Bus
KeyFn = Callable[[Event], str]


def _seconds(kind: str, name: str, value: float, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{kind}.{name}: must be a number of seconds, got {value!r}")
    if value < 0 or (not zero and value == 0) or value != value:
        raise ConfigError(f"{kind}.{name}: must be {'>= 0' if zero else '> 0'} seconds, "
                          f"got {value!r}")
    if round(value * 1000) != value * 1000 and abs(round(value * 1000) - value * 1000) > 1e-6:
        raise ConfigError(f"{kind}.{name}: at most millisecond precision, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed windows of ``size`` seconds, back to back, aligned on the epoch: ``[k*size,
    (k+1)*size)``. ``grace``: seconds a window stays open for late events after its end."""

    size: float
    grace: float = 0.0

    def __post_init__(self) -> None:
        _seconds("Tumbling", "size", self.size, zero=False)
        _seconds("Tumbling", "grace", self.grace, zero=True)


@dataclass(frozen=True, slots=True)
class Hopping:
    """Windows of ``size`` seconds starting every ``advance`` seconds (aligned on the epoch):
    an event counts in every window that holds its time."""

    size: float
    advance: float
    grace: float = 0.0

    def __post_init__(self) -> None:
        _seconds("Hopping", "size", self.size, zero=False)
        _seconds("Hopping", "advance", self.advance, zero=False)
        _seconds("Hopping", "grace", self.grace, zero=True)
        if self.advance > self.size:
            raise ConfigError("Hopping.advance: must not exceed size (events would fall in "
                              "no window)")


@dataclass(frozen=True, slots=True)
class Sliding:
    """One window per event, ``[t - size, t]`` (both ends included), holding every event of
    its key whose time falls in it. Closes ``grace`` seconds of stream time after ``t``."""

    size: float
    grace: float = 0.0

    def __post_init__(self) -> None:
        _seconds("Sliding", "size", self.size, zero=False)
        _seconds("Sliding", "grace", self.grace, zero=True)


@dataclass(frozen=True, slots=True)
class Session:
    """Sessions per key: events less than ``gap`` seconds apart are in one session, from its
    first event's time to its last's. A session closes when stream time passes its last event
    by ``gap + grace``. Joining two sessions (an out-of-order event between them) folds them
    with the aggregate's ``merge``."""

    gap: float
    grace: float = 0.0

    def __post_init__(self) -> None:
        _seconds("Session", "gap", self.gap, zero=False)
        _seconds("Session", "grace", self.grace, zero=True)


Window = Tumbling | Hopping | Sliding | Session


def _source(kind: str, name: str, source: Any, pattern: Any) -> Pattern | None:
    if isinstance(source, Stream):
        if pattern is not None:
            raise ConfigError(f"{kind} {name!r}: pattern= applies to a bus source, not a stream")
        return None
    if isinstance(source, Bus):
        if pattern is None:
            raise ConfigError(f"{kind} {name!r}: a bus source needs pattern= (which events)")
        return compile_pattern(pattern, f"{kind} {name!r}")
    raise ConfigError(f"{kind} {name!r}: source must be a Stream or a Bus, got "
                      f"{type(source).__name__}")


def _callable(kind: str, name: str, what: str, fn: Any, *, optional: bool = False) -> None:
    if fn is None and optional:
        return
    if not callable(fn):
        raise ConfigError(f"{kind} {name!r}: {what}= must be callable, got {type(fn).__name__}")


def _target(kind: str, name: str, target: Any) -> None:
    if target is not None and not isinstance(target, Stream | Bus):
        raise ConfigError(f"{kind} {name!r}: emit_to= must be a Stream or a Bus, got "
                          f"{type(target).__name__}")


def _view_name(kind: str, name: str) -> None:
    check_name(kind.lower(), name)


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    """The latest value per key of a stream, or of a bus's events matching ``pattern``.

    ``key(event)`` names the row (a string); ``value(event)`` is what it holds (``event.data``
    by default); a value of None deletes the row (a tombstone). ``ttl``: seconds after its last
    update that a row expires (read as absent, then removed). ``version``: bump it to rebuild
    the table from the log when a change is not visible in the functions' code.
    """

    name: str
    source: Source
    key: KeyFn
    value: Callable[[Event], Any] | None = None
    pattern: Mapping[str, Any] | str | None = None
    ttl: float | None = None
    version: int = 0
    compiled: Pattern | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _view_name("Table", self.name)
        object.__setattr__(self, "compiled", _source("Table", self.name, self.source,
                                                     self.pattern))
        _callable("Table", self.name, "key", self.key)
        _callable("Table", self.name, "value", self.value, optional=True)
        if self.ttl is not None:
            _seconds(f"Table {self.name!r}", "ttl", self.ttl, zero=False)


@dataclass(frozen=True, slots=True, eq=False)
class Aggregate:
    """A fold per key and window: ``add(acc, event)`` from ``initial()``.

    Windows are over event time (``Event.time``). Results are readable while a window is open;
    when it closes (stream time past its end plus grace), one final event is emitted onto
    ``emit_to`` with data ``{"key", "start", "end", "value"}``. ``idle_timeout``: seconds of
    wall-clock time after which a partition that received nothing moves its stream time up to
    the clock, so quiet keys still get their final result. ``merge(a, b)`` joins two sessions'
    values (Session windows only).
    """

    name: str
    source: Source
    key: KeyFn
    window: Window
    initial: Callable[[], Any]
    add: Callable[[Any, Event], Any]
    emit_to: Stream | Bus | None = None
    merge: Callable[[Any, Any], Any] | None = None
    pattern: Mapping[str, Any] | str | None = None
    idle_timeout: float | None = None
    version: int = 0
    compiled: Pattern | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _view_name("Aggregate", self.name)
        object.__setattr__(self, "compiled", _source("Aggregate", self.name, self.source,
                                                     self.pattern))
        _callable("Aggregate", self.name, "key", self.key)
        _callable("Aggregate", self.name, "initial", self.initial)
        _callable("Aggregate", self.name, "add", self.add)
        _callable("Aggregate", self.name, "merge", self.merge, optional=True)
        _target("Aggregate", self.name, self.emit_to)
        if not isinstance(self.window, Tumbling | Hopping | Sliding | Session):
            raise ConfigError(f"Aggregate {self.name!r}: window= must be Tumbling, Hopping, "
                              f"Sliding or Session, got {type(self.window).__name__}")
        if self.idle_timeout is not None:
            _seconds(f"Aggregate {self.name!r}", "idle_timeout", self.idle_timeout, zero=False)


@dataclass(frozen=True, slots=True, eq=False)
class Join:
    """A stream-table join: each event of ``source`` enriched with ``table``'s current row for
    ``key(event)`` (the event's partition key by default), emitted onto ``emit_to``.

    ``how="inner"`` emits only events whose row exists; ``"left"`` emits every event (the row
    None when absent). ``combine(event, row)`` makes the output's data; by default
    ``{"event": event.data, "<table name>": row}``. The output keeps the event's type, partition
    key, tenant and time; its id is derived from the input's, so a redelivery is recognised.
    The source must have as many partitions as the table's source (co-partitioning).
    """

    name: str
    source: Source
    table: Table
    emit_to: Stream | Bus
    key: KeyFn | None = None
    how: Literal["inner", "left"] = "inner"
    combine: Callable[[Event, Any], Any] | None = None
    pattern: Mapping[str, Any] | str | None = None
    version: int = 0
    compiled: Pattern | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _view_name("Join", self.name)
        object.__setattr__(self, "compiled", _source("Join", self.name, self.source,
                                                     self.pattern))
        if not isinstance(self.table, Table):
            raise ConfigError(f"Join {self.name!r}: table= must be a Table")
        if self.emit_to is None:
            raise ConfigError(f"Join {self.name!r}: emit_to= is required")
        _target("Join", self.name, self.emit_to)
        _callable("Join", self.name, "key", self.key, optional=True)
        _callable("Join", self.name, "combine", self.combine, optional=True)
        if self.how not in ("inner", "left"):
            raise ConfigError(f"Join {self.name!r}: how= must be 'inner' or 'left', "
                              f"got {self.how!r}")


@dataclass(frozen=True, slots=True, eq=False)
class TableJoin:
    """A table-table join: for each row of ``left``, the row of ``right`` with the same key, or
    with the key ``foreign_key(left_value)`` computes (a foreign-key join).

    It is computed when read, from both tables' committed state, so it is always up to date
    with both sides and keeps no state of its own. ``how="inner"`` leaves out left rows without
    a right row; ``"left"`` keeps them (right None). ``combine(left_value, right_value)`` makes
    a row's value; by default ``{"<left name>": ..., "<right name>": ...}``.
    """

    name: str
    left: Table
    right: Table
    foreign_key: Callable[[Any], str] | None = None
    how: Literal["inner", "left"] = "inner"
    combine: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        _view_name("TableJoin", self.name)
        for side in ("left", "right"):
            if not isinstance(getattr(self, side), Table):
                raise ConfigError(f"TableJoin {self.name!r}: {side}= must be a Table")
        _callable("TableJoin", self.name, "foreign_key", self.foreign_key, optional=True)
        _callable("TableJoin", self.name, "combine", self.combine, optional=True)
        if self.how not in ("inner", "left"):
            raise ConfigError(f"TableJoin {self.name!r}: how= must be 'inner' or 'left', "
                              f"got {self.how!r}")


@dataclass(frozen=True, slots=True, eq=False)
class StreamJoin:
    """A windowed stream-stream join: each pair of a ``left`` and a ``right`` event with the
    same key whose times are at most ``within`` seconds apart, emitted once onto ``emit_to``.

    ``key(event)`` is the join key on both sides (the partition key by default).
    ``combine(left, right)`` makes the output's data; by default ``{"left": left.data,
    "right": right.data}``. Each side keeps its events for ``within + grace`` seconds of its
    stream time; an event older than that is late (counted and dead-lettered).
    """

    name: str
    left: Stream | Bus
    right: Stream | Bus
    within: float
    emit_to: Stream | Bus
    key: KeyFn | None = None
    grace: float = 0.0
    combine: Callable[[Event, Event], Any] | None = None
    left_pattern: Mapping[str, Any] | str | None = None
    right_pattern: Mapping[str, Any] | str | None = None
    version: int = 0
    compiled: tuple[Pattern | None, Pattern | None] = field(default=(None, None), init=False)

    def __post_init__(self) -> None:
        _view_name("StreamJoin", self.name)
        object.__setattr__(self, "compiled", (
            _source("StreamJoin", self.name, self.left, self.left_pattern),
            _source("StreamJoin", self.name, self.right, self.right_pattern)))
        _seconds(f"StreamJoin {self.name!r}", "within", self.within, zero=True)
        _seconds(f"StreamJoin {self.name!r}", "grace", self.grace, zero=True)
        if self.emit_to is None:
            raise ConfigError(f"StreamJoin {self.name!r}: emit_to= is required")
        _target("StreamJoin", self.name, self.emit_to)
        _callable("StreamJoin", self.name, "key", self.key, optional=True)
        _callable("StreamJoin", self.name, "combine", self.combine, optional=True)


View = Table | Aggregate | Join | TableJoin | StreamJoin
#: Views that a consumer keeps up to date from a source.
SourcedView = Table | Aggregate | Join


def _code(fn: Any) -> str:
    """What identifies a function's behaviour: its bytecode, constants and names."""
    if fn is None:
        return "-"
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(type(fn))
    consts = tuple(_code(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts)
    return repr((code.co_code, consts, code.co_names, code.co_varnames))


def fingerprint(view: SourcedView | StreamJoin) -> str:
    """A digest of a view's definition: a change rebuilds the view from the log."""
    if isinstance(view, StreamJoin):
        fields = [view.name, str(view.version), view.left.name, view.right.name,
                  repr(view.within), repr(view.grace), _code(view.key), _code(view.combine),
                  repr(view.left_pattern), repr(view.right_pattern), view.emit_to.name]
        return hashlib.blake2b("\x1f".join(fields).encode(), digest_size=8).hexdigest()
    parts: list[str] = [type(view).__name__, view.name, str(view.version),
                        type(view.source).__name__, view.source.name,
                        repr(view.pattern), _code(view.key)]
    if isinstance(view, Table):
        parts += [_code(view.value), repr(view.ttl)]
    elif isinstance(view, Aggregate):
        parts += [repr(view.window), _code(view.initial), _code(view.add), _code(view.merge),
                  repr(None if view.emit_to is None else view.emit_to.name)]
    else:
        parts += [fingerprint(view.table), view.how, _code(view.combine), view.emit_to.name]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()
