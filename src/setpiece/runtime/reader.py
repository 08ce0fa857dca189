"""One reader per stream for all the consumers of a process that follow it.

Every handler and rule target on a bus is its own consumer group, and they all read the same
records, usually at nearly the same offsets. The reader reads each record from the engine once,
decodes it once, and matches it against every consumer's pattern in one pass of a
:class:`~setpiece.patterns.RuleSet` (cost grows far slower than the number of rules), then keeps
it in a window for the consumers that come by next. Records never change once appended, so the
window needs no invalidation. It holds a partition's records from the slowest of the consumers
reading that partition here onwards (each read says where its consumer is), and never more than
``_WINDOW`` of them: when every consumer has caught up, it holds almost nothing.

When every pattern looks only at top-level attributes (``{"type": [...]}``, ``source``,
``subject``: the usual rules of a service), which rules match depends only on those attributes'
values, and a stream carries few distinct combinations of them: the answer is remembered per
combination (a bounded memo), so most records are matched by one dict lookup.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import msgspec

from setpiece.engine.contract import Engine, Record
from setpiece.errors import EventError
from setpiece.event import Event
from setpiece.patterns import Pattern, RuleSet

__all__ = ["Entry", "StreamReader"]

_decode = msgspec.json.Decoder().decode
_WINDOW = 8192  # records kept per partition


_MEMO_SIZE = 1024  # remembered combinations of attribute values, per reader
_ABSENT: Any = object()  # an attribute the record does not have (not the same as null)


class _Rules:
    """The consumers' patterns in one RuleSet, with the memo of the module docstring."""

    __slots__ = ("_memo", "_names", "rules")

    def __init__(self) -> None:
        self.rules = RuleSet()
        self._names: tuple[str, ...] | None = ()  # the attributes tested; None: a nested path
        self._memo: dict[tuple[Any, ...], frozenset[str]] = {}

    def add(self, name: str, pattern: Pattern) -> None:
        self.rules.add(name, pattern)
        self._memo.clear()
        paths = {field[0] for fields in pattern.fields for field in fields}
        if self._names is not None and all("." not in path for path in paths):
            self._names = tuple(sorted({*self._names, *paths}))
        else:
            self._names = None

    def match(self, view: dict[str, Any]) -> frozenset[str] | set[str]:
        names = self._names
        if names is None:
            return self.rules.match(view)
        key: list[Any] = []
        for name in names:
            value = view.get(name, _ABSENT)
            kind = type(value)
            if kind is dict or kind is list:  # not hashable: no memo for this record
                return self.rules.match(view)
            key += (kind, value)  # the type too: True == 1 and 1 == 1.0, but may match apart
        memo_key = tuple(key)
        found = self._memo.get(memo_key)
        if found is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            found = self._memo[memo_key] = frozenset(self.rules.match(view))
        return found


class Entry:
    """A record, decoded once, with the names of the consumers whose patterns it matches.

    Whatever a record holds, making an entry never raises: a record that is not a JSON object
    keeps its failure in ``error`` (every consumer dead-letters it), one the patterns cannot be
    matched against (nested too deep, ...) in ``match_error`` (every consumer with a pattern
    dead-letters it).
    """

    __slots__ = ("_event", "error", "match_error", "matched", "raw", "record")

    def __init__(self, record: Record, rules: _Rules | None) -> None:
        self.record = record
        self._event: Event | None = None
        self.error: Exception | None = None
        self.match_error: Exception | None = None
        self.matched: frozenset[str] | set[str] = frozenset()
        try:
            raw = _decode(record.value)
            if not isinstance(raw, dict):
                raise ValueError(f"a record must hold a JSON object, not {type(raw).__name__}")
        except Exception as exc:  # any failure on one record is that record's
            self.raw: dict[str, Any] = {}
            self.error = exc
            return
        self.raw = raw
        if rules is not None:
            try:
                self.matched = rules.match(_match_view(raw))
            except Exception as exc:  # a PatternError, RecursionError, ...
                self.match_error = exc

    def event(self) -> Event:
        """The record as an Event (built on first use, shared by the consumers)."""
        if self._event is None:
            raw = self.raw
            for name in ("id", "source"):  # present on every event a runtime stored
                if not raw.get(name):
                    raise EventError(f"{name}: required attribute is missing", field=name)
            extensions = raw.get("extensions")
            if extensions is not None and not isinstance(extensions, dict):
                raise EventError("extensions: must be an object", field="extensions")
            self._event = msgspec.convert(raw, Event).validate()
        return self._event


def _match_view(raw: dict[str, Any]) -> dict[str, Any]:
    """The dict a rule's pattern sees: extensions flat, EventBridge's names added.

    Without extensions (the common case) that is ``raw`` itself with the two names added:
    building the Event from it ignores them, and nothing else reads them.
    """
    if "extensions" not in raw:
        raw["detail-type"] = raw.get("type")
        raw["detail"] = raw.get("data")
        return raw
    view = dict(raw)
    extensions = view.pop("extensions", None)
    if extensions and isinstance(extensions, dict):  # else: refused when decoded
        for name, value in extensions.items():
            view.setdefault(name, value)
    view["detail-type"] = raw.get("type")
    view["detail"] = raw.get("data")
    return view


class StreamReader:
    """Reads one stream for many consumers; see the module docstring."""

    def __init__(self, engine: Engine, stream: str) -> None:
        self.engine = engine
        self.stream = stream
        self._rules: _Rules | None = None
        self._window: dict[int, dict[int, Entry]] = {}
        # partition -> consumer -> the offset it read from last (what it may still need)
        self._positions: dict[int, dict[str, int]] = {}

    def forget(self, consumer: str, partitions: Iterable[int] | None = None) -> None:
        """``consumer`` reads ``partitions`` (all, without) here no more: it lost or left them."""
        for partition, positions in self._positions.items():
            if partitions is None or partition in partitions:
                positions.pop(consumer, None)

    def follow(self, name: str, pattern: Pattern | None) -> None:
        """Register a consumer; with a pattern, entries list it in ``matched`` when they match."""
        if pattern is not None:
            if self._rules is None:
                self._rules = _Rules()
            self._rules.add(name, pattern)
            self._window.clear()  # entries matched before this rule existed

    async def read(
        self, partition: int, offset: int, limit: int, consumer: str | None = None
    ) -> list[Entry]:
        """Up to ``limit`` entries from ``offset``. ``consumer`` (its name) lets the window drop
        what every consumer of the partition has read past."""
        window = self._window.setdefault(partition, {})
        if consumer is not None:
            positions = self._positions.setdefault(partition, {})
            positions[consumer] = offset
            low = min(positions.values())
            passed = []
            for old in window:  # oldest first (mostly: a re-read adds old offsets at the end)
                if old >= low:
                    break
                passed.append(old)
            for old in passed:
                del window[old]
        out: list[Entry] = []
        entry = window.get(offset)
        while entry is not None and len(out) < limit:
            out.append(entry)
            offset += 1
            entry = window.get(offset)
        if out:
            return out
        records = await self.engine.read(self.stream, partition, offset, limit)
        rules = self._rules
        for record in records:
            entry = Entry(record, rules)
            window[record.offset] = entry
            out.append(entry)
        excess = len(window) - _WINDOW
        if excess > 0:
            for old in list(itertools.islice(window, excess)):  # the oldest were added first
                del window[old]
        return out
