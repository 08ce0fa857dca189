"""The batch path that keeps a view up to date: read a big batch of one partition, decode it,
fold it in memory, and commit the state it changed, the events it emits, its dead letters and
the offset in one unit of work.

A :class:`ViewConsumer` is a :class:`~setpiece.runtime.consumer.Consumer` (group membership,
assignment, restarts and draining are the runtime's) whose turn is this batch path instead of a
handler call per event. Keys are read with their versions, so two members folding one key from
two partitions conflict and one of them reads its batch again: effects stay exactly once.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from setpiece.bus import Bus, bus_stream_name
from setpiece.context import check_key
from setpiece.engine.contract import Engine, KVRead, KVWrite, OffsetCommit, Record, UnitOfWork
from setpiece.errors import ConflictError, ViewError
from setpiece.event import Event, encode_event
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.consumer import (
    REPLAY_MARK, RULE_MARK, TARGET_MARK, Consumer, dead_letter_record,
)
from setpiece.runtime.reader import Entry, StreamReader
from setpiece.runtime.unit import Attempt
from setpiece.views._state import (
    SEP,
    TENANT,
    Layout,
    _seconds_cache,
    event_ms,
    iso,
    scoped,
    table_row,
)
from setpiece.views.declarations import (
    Aggregate,
    Hopping,
    Join,
    Session,
    Sliding,
    SourcedView,
    StreamJoin,
    Table,
    Tumbling,
)

__all__ = ["BATCH", "ViewConsumer", "source_stream"]

log = logging.getLogger("setpiece.views")
BATCH = 16384  # records folded per partition per commit (at most)
_decode_event = msgspec.json.Decoder(Event).decode
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_new = tuple.__new__


def source_stream(source: Any) -> str:
    return bus_stream_name(source.name) if isinstance(source, Bus) else source.name


async def _no_action(event: Event, attempt: Attempt, number: int) -> None:  # pragma: no cover
    raise AssertionError("a view consumer folds batches; it runs no action")


class ViewConsumer(Consumer):
    """One view's consumer group on its source; see the module docstring."""

    def __init__(self, view: SourcedView | StreamJoin, engine: Engine, config: RuntimeConfig,
                 reader: StreamReader, now: Callable[[], float], on_commit: Callable[[], None],
                 side: str = "") -> None:
        self.view = view
        self.layout = Layout(view)
        self.side = side  # a stream-stream join's "left" or "right"
        if isinstance(view, StreamJoin):
            source, accept = ((view.left, view.compiled[0]) if side == "left"
                              else (view.right, view.compiled[1]))
            group, label = f"{self.layout.group}.{side}", f"view {view.name} ({side})"
        else:
            source, accept = view.source, view.compiled
            group, label = self.layout.group, f"view {view.name}"
        super().__init__(
            engine=engine, config=config, group=group, stream=source_stream(source),
            label=label, action=_no_action, retry=_RETRY, concurrency=1,
            reader=reader, accept=accept, rule=None,
            start_at_end=False, on_commit=on_commit,
        )
        self._times: dict[int, int] = {}  # a stream-stream join side's stream time
        self.good_keys: set[str] = set()  # keys that passed the checks of _key
        self._now = now
        self._owned_seen: tuple[int, ...] = ()
        self._parts: dict[int, _Partition] = {}
        self._last_records: dict[int, float] = {}  # partition -> clock time of its last record

    # -- the turn ---------------------------------------------------------------------------

    async def _maybe_heartbeat(self) -> None:
        await super()._maybe_heartbeat()
        if self.owned != self._owned_seen:  # assignment moved: state is read afresh
            self._owned_seen = self.owned
            self._parts.clear()
            self._times.clear()
            now = self._now()
            self._last_records = {p: now for p in self.owned}

    async def _step(self) -> None:
        await self._maybe_heartbeat()
        progressed = False
        for partition in self.owned:
            if self._stopping:
                break
            progressed |= await self._turn(partition)
        if not progressed and not self._stopping:
            progressed = await self._idle()
        if not progressed and not self._stopping:
            timeout = max(0.0, self._next_heartbeat - time.monotonic())
            await self.engine.wait([self.stream], timeout)

    async def _turn(self, partition: int) -> bool:
        start = self.positions[partition]
        events: list[tuple[Record, Entry | None]]
        if self.accept is None:
            records = await self.engine.read(self.stream, partition, start, BATCH)
            events = [(r, None) for r in records]
        else:
            entries = await self.reader.read(partition, start, BATCH)
            records = [e.record for e in entries]
            events = [(e.record, e) for e in entries]
        if not records:
            return False
        self._last_records[partition] = self._now()
        self.busy = True
        try:
            work = UnitOfWork()
            await self._fold(partition, events, work)
            end = records[-1].offset + 1
            work.offsets.append(OffsetCommit(self.group, self.stream, partition, start, end))
            return await self._commit(partition, work, end)
        finally:
            self.busy = False

    async def _commit(self, partition: int, work: UnitOfWork, end: int | None) -> bool:
        try:
            await self.engine.commit(work)
        except ConflictError as exc:
            log.debug("%s: %s; reading again from the committed offset", self.label, exc)
            committed = await self.engine.committed(self.group, self.stream)
            self.positions[partition] = committed[partition]
            self._parts.pop(partition, None)
            self._times.pop(partition, None)
            self._next_heartbeat = 0.0
            return True
        if end is not None:
            self.positions[partition] = end
        part = self._parts.get(partition)
        if part is not None:
            part.committed()
        self._on_commit()
        return True

    async def _idle(self) -> bool:
        """Close windows of partitions idle past the aggregate's ``idle_timeout``."""
        view = self.view
        if not isinstance(view, Aggregate) or view.idle_timeout is None:
            return False
        now = self._now()
        progressed = False
        for partition in self.owned:
            if now - self._last_records.get(partition, now) < view.idle_timeout:
                continue
            part = await self._part(partition)
            if not part.heap or part.next_close() > now * 1000:
                continue
            work = UnitOfWork()
            part.advance(round(now * 1000))
            await self._close(part, work)
            part.write_meta(work)
            progressed |= await self._commit(partition, work, None)
        return progressed

    # -- decoding ---------------------------------------------------------------------------

    def _events(self, events: list[tuple[Record, Entry | None]], work: UnitOfWork
                ) -> list[tuple[Record, Event]]:
        out: list[tuple[Record, Event]] = []
        group = self.group
        for record, entry in events:
            try:
                if entry is None:
                    event = _decode_event(record.value)
                else:
                    if entry.error is not None:
                        raise entry.error
                    if entry.match_error is not None:
                        raise entry.match_error
                    if group not in entry.matched:
                        continue
                    event = entry.event()
            except Exception as exc:
                self._dead(work, record, None, exc)
                continue
            marks = event.extensions
            if marks and not self._ours(marks):
                continue
            out.append((record, event))
        return out

    def _ours(self, marks: dict[str, Any]) -> bool:
        """Whether a record with these extensions is for this view: a redrive aimed at another
        consumer, or a replay (views fold each record of the log once), is not."""
        if REPLAY_MARK in marks or RULE_MARK in marks:
            return False
        target = marks.get(TARGET_MARK)
        return target is None or target == self.group

    def _dead(self, work: UnitOfWork, record: Record, event: Event | None,
              exc: BaseException) -> None:
        work.appends.append(dead_letter_record(event, exc, 1, label=self.label,
                                               group=self.group, record=record))

    def _key_error(self, exc: Exception) -> ViewError:
        error = ViewError(f"view {self.view.name!r}: the key function raised "
                          f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _key(self, fn: Callable[[Event], Any], event: Event) -> str:
        try:
            key = fn(event)
        except Exception as exc:
            raise self._key_error(exc) from exc
        return self.checked_key(key)

    def checked_key(self, key: Any) -> str:
        """``key`` if a view can keep it; ViewError naming what is wrong otherwise."""
        if type(key) is not str:
            raise ViewError(f"view {self.view.name!r}: the key function returned "
                            f"{type(key).__name__}, not a string")
        try:
            check_key(key)
        except ValueError as exc:
            raise ViewError(f"view {self.view.name!r}: {exc}") from None
        if TENANT in key or (SEP in key and not isinstance(self.view, Table)):
            raise ViewError(f"view {self.view.name!r}: key {key!r} holds U+001E or U+001F "
                            "(reserved by views)")
        return key

    # -- folding ----------------------------------------------------------------------------

    async def _fold(self, partition: int, events: list[tuple[Record, Entry | None]],
                    work: UnitOfWork) -> None:
        decoded = self._events(events, work)
        view = self.view
        if isinstance(view, Table):
            self._fold_table(view, decoded, work)
        elif isinstance(view, Join):
            await self._fold_join(view, decoded, work)
        elif isinstance(view, StreamJoin):
            await self._fold_stream_join(view, partition, decoded, work)
        else:
            part = await self._part(partition)
            await part.fold(decoded, work)
            await self._close(part, work)
            part.write_meta(work)

    def _fold_table(self, view: Table, decoded: list[tuple[Record, Event]],
                    work: UnitOfWork) -> None:
        rows: dict[str, bytes | None] = {}
        key_fn, value_fn, ttl = view.key, view.value, view.ttl
        for record, event in decoded:
            try:
                key = scoped(self._key(key_fn, event), event.tenant)
                if value_fn is None:
                    value = event.data
                else:
                    try:
                        value = value_fn(event)
                    except Exception as exc:
                        raise ViewError(f"view {view.name!r}: the value function raised "
                                        f"{type(exc).__name__}: {exc}") from exc
                expires = None if ttl is None else event_ms(event) + round(ttl * 1000)
                rows[key] = None if value is None else _encode([value, expires])
            except Exception as exc:
                self._dead(work, record, event, exc)
        ns = self.layout.state
        work.writes.extend(_new(KVWrite, (ns, k, v)) for k, v in rows.items())

    async def _fold_join(self, view: Join, decoded: list[tuple[Record, Event]],
                         work: UnitOfWork) -> None:
        keyed: list[tuple[Record, Event, str]] = []
        for record, event in decoded:
            try:
                if view.key is None:
                    if event.partitionkey is None:
                        raise ViewError(f"view {view.name!r}: the event has no partitionkey "
                                        "to join on (or give key=)")
                    key = event.partitionkey
                else:
                    key = self._key(view.key, event)
            except Exception as exc:
                self._dead(work, record, event, exc)
                continue
            keyed.append((record, event, scoped(key, event.tenant)))
        if not keyed:
            return
        table = Layout(view.table).state
        found = await self.engine.kv_get(table, list({k for _, _, k in keyed}))
        now = self._now() * 1000
        rows: dict[str, Any] = {}
        for key, (raw, _) in found.items():
            present, value = table_row(raw, now)
            if present:
                rows[key] = value
        target = source_stream(view.emit_to)
        name, combine, left = view.table.name, view.combine, view.how == "left"
        appends = work.appends
        for record, event, key in keyed:
            row = rows.get(key)
            if row is None and not left:
                continue
            try:
                data = ({"event": event.data, name: row} if combine is None
                        else combine(event, row))
                out = msgspec.structs.replace(
                    event, data=data, id=f"{event.id}:{view.name}", causationid=event.id,
                    correlationid=event.correlationid or event.id)
                appends.append((target, out.partitionkey, encode_event(out)))
            except Exception as exc:
                self._dead(work, record, event, ViewError(
                    f"view {view.name!r}: combine raised {type(exc).__name__}: {exc}"))

    async def _fold_stream_join(self, view: StreamJoin, partition: int,
                                decoded: list[tuple[Record, Event]], work: UnitOfWork) -> None:
        """Pair each event with the other side's buffered events of its key within
        ``within``; keep it in this side's buffer. Both buffers are read with their versions,
        so of two sides committing at once the second reads again and finds the pair."""
        layout, side = self.layout, self.side
        other = "right" if side == "left" else "left"
        meta_key = f"t:{side}:{partition}"
        stream_time = self._times.get(partition)
        if stream_time is None:
            found = await self.engine.kv_get(layout.meta, [meta_key])
            stream_time = _decode(found[meta_key][0]) if meta_key in found else -(2**62)
        within, grace = round(view.within * 1000), round(view.grace * 1000)
        keyed: list[tuple[Record, Event, str, int]] = []
        for record, event in decoded:
            try:
                if view.key is None:
                    if event.partitionkey is None:
                        raise ViewError(f"view {view.name!r}: the event has no partitionkey "
                                        "to join on (or give key=)")
                    key = event.partitionkey
                else:
                    key = self._key(view.key, event)
                keyed.append((record, event, scoped(key, event.tenant), event_ms(event)))
            except Exception as exc:
                self._dead(work, record, event, exc)
        keys = sorted({k for _, _, k, _ in keyed})
        mine = await _read_versions(self.engine, work, layout.buf,
                                    [f"{side}{SEP}{k}" for k in keys])
        theirs = await _read_versions(self.engine, work, layout.buf,
                                      [f"{other}{SEP}{k}" for k in keys])
        own = {k: mine.get(f"{side}{SEP}{k}", []) for k in keys}
        target = source_stream(view.emit_to)
        late = 0
        for record, event, key, t in keyed:
            if t + within + grace < stream_time:
                late += 1
                self._dead(work, record, event, ViewError(
                    f"view {view.name!r}: late event (time {iso(t)}, stream time "
                    f"{iso(stream_time)}, within {view.within:g}s, grace {view.grace:g}s)"))
                continue
            for t2, raw in theirs.get(f"{other}{SEP}{key}", []):
                if abs(t - t2) <= within:
                    match = msgspec.convert(raw, Event)
                    left, right = (event, match) if side == "left" else (match, event)
                    try:
                        data = ({"left": left.data, "right": right.data} if view.combine is None
                                else view.combine(left, right))
                    except Exception as exc:
                        self._dead(work, record, event, ViewError(
                            f"view {view.name!r}: combine raised {type(exc).__name__}: {exc}"))
                        continue
                    out = {"type": f"view.{view.name}", "source": f"setpiece/views/{view.name}",
                           "data": data, "id": f"{view.name}:{left.id}:{right.id}",
                           "time": iso(max(t, t2)), "specversion": "1.0",
                           "partitionkey": event.partitionkey or key}
                    if event.tenant is not None:
                        out["tenant"] = event.tenant
                    work.appends.append((target, key, _encode(out)))
            own[key].append([t, event.to_dict()])
            stream_time = max(stream_time, t)
        horizon = stream_time - within - grace
        for key, events in own.items():
            kept = [e for e in events if e[0] >= horizon]
            work.writes.append(_new(KVWrite, (layout.buf, f"{side}{SEP}{key}",
                                              _encode(kept) if kept else None)))
        self._times[partition] = stream_time
        work.writes.append(KVWrite(layout.meta, meta_key, _encode(stream_time)))
        if late:
            late_key = f"late:{side}:{partition}"
            found = await self.engine.kv_get(layout.meta, [late_key])
            before = _decode(found[late_key][0]) if late_key in found else 0
            work.writes.append(KVWrite(layout.meta, late_key, _encode(before + late)))

    # -- windows ----------------------------------------------------------------------------

    async def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            assert isinstance(self.view, Aggregate)
            part = self._parts[partition] = _Partition(self, self.view, partition)
            await part.load()
        return part

    async def _close(self, part: _Partition, work: UnitOfWork) -> None:
        closing = part.due()
        if closing:
            await part.emit_closed(closing, work)
        part.flush_buffers(work)
        part.committed()  # the batch's reads are spent: the next batch reads afresh


async def _read_versions(engine: Engine, work: UnitOfWork, ns: str, keys: list[str]
                         ) -> dict[str, Any]:
    """Read keys with their versions into ``work.reads``; decoded values of those present."""
    found = await engine.kv_get(ns, keys)
    reads = work.reads
    out: dict[str, Any] = {}
    for key in keys:
        hit = found.get(key)
        reads.append(_new(KVRead, (ns, key, hit[1] if hit else 0)))
        if hit:
            out[key] = _decode(hit[0])
    return out


class _Partition:
    """An aggregate's windows on one partition: stream time, the open-window index, and the
    state of the keys a batch touches (read with versions)."""

    def __init__(self, consumer: ViewConsumer, view: Aggregate, partition: int) -> None:
        self.c = consumer
        self.view = view
        self.p = partition
        self.layout = consumer.layout
        self.engine = consumer.engine
        w = view.window
        self.size = round((w.gap if isinstance(w, Session) else w.size) * 1000)
        self.grace = round(w.grace * 1000)
        self.advance_ms = round(w.advance * 1000) if isinstance(w, Hopping) else 0
        self.stream_time = -(2**62)
        self.late = 0
        self.open: dict[tuple[str, int], int] = {}  # (key, start) -> close ms
        self.groups: dict[int, set[tuple[str, int]]] = {}  # close ms -> open windows
        self.heap: list[int] = []  # close times (a time may be stale: its group is gone)
        self.dirty: set[int] = set()  # groups to write with this batch
        # what this batch read and folded: (key, start) -> [start, end, value, closed]
        self._windows_cache: dict[tuple[str, int], list[Any]] = {}
        self._buffers: dict[str, list[Any]] = {}
        self._buf_dirty: set[str] = set()

    async def load(self) -> None:
        meta = await self.engine.kv_get(self.layout.meta, [f"t:{self.p}", f"late:{self.p}"])
        if f"t:{self.p}" in meta:
            self.stream_time = _decode(meta[f"t:{self.p}"][0])
        if f"late:{self.p}" in meta:
            self.late = _decode(meta[f"late:{self.p}"][0])
        prefix = f"{self.p}{SEP}"
        for k, v in await self.engine.kv_scan(self.layout.open, prefix, 10_000_000):
            close = int(k[len(prefix):])
            members = self.groups[close] = {(key, start) for key, start in _decode(v)}
            for member in members:
                self.open[member] = close
            self.heap.append(close)
        heapq.heapify(self.heap)

    def committed(self) -> None:
        self._windows_cache = {}
        self._buffers = {}

    def next_close(self) -> int:
        while self.heap:
            if self.heap[0] in self.groups:
                return self.heap[0]
            heapq.heappop(self.heap)
        return 2**62

    def advance(self, ms: int) -> None:
        if ms > self.stream_time:
            self.stream_time = ms

    def due(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        heap, groups = self.heap, self.groups
        while heap and heap[0] <= self.stream_time:
            close = heapq.heappop(heap)
            members = groups.pop(close, None)
            if members:
                out.extend(sorted(members))
                self.dirty.add(close)
        for member in out:
            del self.open[member]
        return out

    def write_meta(self, work: UnitOfWork) -> None:
        ns = self.layout.meta
        work.writes.append(KVWrite(ns, f"t:{self.p}", _encode(self.stream_time)))
        work.writes.append(KVWrite(ns, f"late:{self.p}", _encode(self.late)))
        open_ns, prefix = self.layout.open, f"{self.p}{SEP}"
        for close in self.dirty:
            members = self.groups.get(close)
            work.writes.append(KVWrite(open_ns, f"{prefix}{close:015d}",
                                       _encode(sorted(members)) if members else None))
        self.dirty = set()

    # the index -------------------------------------------------------------------------------

    def _index(self, key: str, start: int, close: int | None) -> None:
        """Open window ``(key, start)`` until ``close`` (None: it is gone)."""
        member = (key, start)
        old = self.open.pop(member, None)
        if old is not None:
            self.groups[old].discard(member)
            self.dirty.add(old)
        if close is not None:
            self.open[member] = close
            group = self.groups.get(close)
            if group is None:
                group = self.groups[close] = set()
                heapq.heappush(self.heap, close)
            group.add(member)
            self.dirty.add(close)

    # folding ---------------------------------------------------------------------------------

    def _windows(self, t: int) -> list[tuple[int, int]]:
        w = self.view.window
        if isinstance(w, Tumbling):
            start = t - t % self.size
            return [(start, start + self.size)]
        assert isinstance(w, Hopping)
        adv = self.advance_ms
        start = t - t % adv
        out = []
        while start > t - self.size:
            out.append((start, start + self.size))
            start -= adv
        out.reverse()
        return out

    async def fold(self, decoded: list[tuple[Record, Event]], work: UnitOfWork) -> None:
        if not decoded:
            return
        # Undo on a failed commit: the partition is dropped and loaded afresh (see _commit).
        c = self.c
        key_fn = self.view.key
        good = c.good_keys
        seconds_of = _seconds_cache
        keyed: list[tuple[Record, Event, str, int]] = []
        append = keyed.append
        for record, event in decoded:
            try:
                try:
                    key = key_fn(event)
                except Exception as exc:
                    raise c._key_error(exc) from exc
                if type(key) is not str or key not in good:
                    c.checked_key(key)  # the checks, and their errors
                    if len(good) >= 100_000:
                        good.clear()
                    good.add(key)
                if event.tenant is not None:
                    key = scoped(key, event.tenant)
                t = event.time
                # the form events are stored in (``...T12:34:56.123456Z``) inline; else parsed
                seconds = seconds_of.get(t[:19]) if len(t) == 27 and t[19] == "." else None
                if seconds is not None and t[26] == "Z" and t[20:26].isdecimal():
                    ms = seconds * 1000 + int(t[20:26]) // 1000
                else:
                    ms = event_ms(event)
                append((record, event, key, ms))
            except Exception as exc:
                c._dead(work, record, event, exc)
        w = self.view.window
        if isinstance(w, Session):
            await self._fold_sessions(keyed, work)
        elif isinstance(w, Sliding):
            await self._fold_sliding(keyed, work)
        else:
            await self._fold_fixed(keyed, work)

    def _late(self, work: UnitOfWork, record: Record, event: Event, t: int, why: str) -> None:
        self.late += 1
        self.c._dead(work, record, event, ViewError(
            f"view {self.view.name!r}: late event (time {iso(t)}, stream time "
            f"{iso(self.stream_time)}, grace {self.grace / 1000:g}s): {why}"))

    async def _read(self, work: UnitOfWork, ns: str, keys: list[str]) -> dict[str, Any]:
        return await _read_versions(self.engine, work, ns, keys)

    async def _fold_fixed(self, keyed: list[tuple[Record, Event, str, int]],
                          work: UnitOfWork) -> None:
        ns = self.layout.state
        size, grace = self.size, self.grace
        tumbling = isinstance(self.view.window, Tumbling)
        plans: list[tuple[Record, Event, int, Any]] = []
        wanted: set[tuple[str, int]] = set()
        if tumbling:  # one window per event
            for record, event, key, t in keyed:
                span = (key, t - t % size)
                plans.append((record, event, t, span))
                wanted.add(span)
        else:
            for record, event, key, t in keyed:
                spans = [(key, start) for start, _ in self._windows(t)]
                plans.append((record, event, t, spans))
                wanted.update(spans)
        names = {w: f"{w[0]}{SEP}{w[1]:015d}" for w in wanted}
        found = await self._read(work, ns, list(names.values()))
        windows: dict[tuple[str, int], list[Any]] = {
            w: found[name] for w, name in names.items() if name in found}
        changed: set[tuple[str, int]] = set()
        add, initial, view = self.view.add, self.view.initial, self.view
        index = self._index
        for record, event, t, spans in plans:
            hit = False
            failed: Exception | None = None
            stream_time = self.stream_time
            for span in (spans,) if tumbling else spans:
                start = span[1]
                if start + size + grace <= stream_time:
                    continue
                state = windows.get(span)
                if state is None:
                    try:
                        acc = add(initial(), event)
                    except Exception as exc:
                        failed = exc
                        break
                    windows[span] = [start, start + size, acc, 0]
                    index(span[0], start, start + size + grace)
                elif state[3]:
                    continue  # closed from another partition
                else:
                    try:
                        state[2] = add(state[2], event)
                    except Exception as exc:
                        failed = exc
                        break
                hit = True
                changed.add(span)
            if failed is not None:
                self.c._dead(work, record, event, ViewError(
                    f"view {view.name!r}: the fold raised {type(failed).__name__}: {failed}"))
                continue
            if not hit:
                self._late(work, record, event, t, "its window closed")
                continue
            if t > stream_time:
                self.stream_time = t
        self._windows_cache = windows
        writes = work.writes
        for span in changed:
            writes.append(_new(KVWrite, (ns, names[span], _encode(windows[span]))))

    async def _fold_sessions(self, keyed: list[tuple[Record, Event, str, int]],
                             work: UnitOfWork) -> None:
        ns = self.layout.state
        view, gap, grace = self.view, self.size, self.grace
        sessions: dict[str, dict[str, list[Any]]] = {}
        for key in {k for _, _, k, _ in keyed}:
            rows = await self.engine.kv_scan(ns, key + SEP, 10_000_000)
            skeys = [k for k, _ in rows]
            sessions[key] = await self._read(work, ns, skeys)
        changed: set[str] = set()
        deleted: set[str] = set()
        for record, event, key, t in keyed:
            mine = sessions[key]
            open_after = self.stream_time - gap - grace  # sessions ending later are open
            touching = [sk for sk, s in mine.items()
                        if not s[3] and s[1] > open_after and s[0] - gap <= t <= s[1] + gap]
            if not touching and t + gap + grace <= self.stream_time:
                self._late(work, record, event, t, "its session closed")
                continue
            if len(touching) > 1 and view.merge is None:
                self.c._dead(work, record, event, ViewError(
                    f"view {view.name!r}: the event joins two sessions; Session windows need "
                    "merge= to fold them together"))
                continue
            try:
                if touching:
                    parts = sorted((mine[sk] for sk in touching), key=lambda s: s[0])
                    acc = parts[0][2]
                    for other in parts[1:]:
                        assert view.merge is not None
                        acc = view.merge(acc, other[2])
                    start = min(parts[0][0], t)
                    end = max(max(s[1] for s in parts), t)
                else:
                    acc, start, end = view.initial(), t, t
                acc = view.add(acc, event)
            except Exception as exc:
                self.c._dead(work, record, event, ViewError(
                    f"view {view.name!r}: the fold raised {type(exc).__name__}: {exc}"))
                continue
            for sk in touching:
                old = mine.pop(sk)
                self._index(key, old[0], None)
                deleted.add(sk)
                changed.discard(sk)
            skey = f"{key}{SEP}{start:015d}"
            mine[skey] = [start, end, acc, 0]
            deleted.discard(skey)
            changed.add(skey)
            self._index(key, start, end + gap + grace)
            if t > self.stream_time:
                self.stream_time = t
        self._windows_cache = {(k, s[0]): s for k, m in sessions.items() for s in m.values()}
        for skey in deleted:
            work.writes.append(_new(KVWrite, (ns, skey, None)))
        for mine in sessions.values():
            for skey, state in mine.items():
                if skey in changed:
                    work.writes.append(_new(KVWrite, (ns, skey, _encode(state))))

    async def _fold_sliding(self, keyed: list[tuple[Record, Event, str, int]],
                            work: UnitOfWork) -> None:
        grace = self.grace
        keys = list({k for _, _, k, _ in keyed})
        buffers = await self._read(work, self.layout.buf, keys)
        bufs: dict[str, list[Any]] = {k: buffers.get(k, []) for k in keys}
        touched: set[str] = set()
        for record, event, key, t in keyed:
            if t + grace <= self.stream_time:
                self._late(work, record, event, t, "its window closed")
                continue
            bufs[key].append([t, event.to_dict()])
            touched.add(key)
            if (key, t - self.size) not in self.open:
                self._index(key, t - self.size, t + grace)
            if t > self.stream_time:
                self.stream_time = t
        self._buffers = bufs
        self._buf_dirty.update(touched)

    def flush_buffers(self, work: UnitOfWork) -> None:
        """Write the sliding buffers this batch changed, without the events no open or future
        window can hold (after the close pass)."""
        horizon = self.stream_time - self.grace - self.size
        for key in self._buf_dirty:
            kept = sorted((e for e in self._buffers[key] if e[0] >= horizon), key=lambda e: e[0])
            work.writes.append(_new(KVWrite, (self.layout.buf, key,
                                              _encode(kept) if kept else None)))
        self._buf_dirty = set()

    # closing ---------------------------------------------------------------------------------

    async def emit_closed(self, closing: list[tuple[str, int]], work: UnitOfWork) -> None:
        view, ns = self.view, self.layout.state
        if isinstance(view.window, Sliding):
            await self._close_sliding(closing, work)
            return
        cache = self._windows_cache
        missing = [w for w in closing if w not in cache]
        if missing:
            names = {f"{k}{SEP}{start:015d}": (k, start) for k, start in missing}
            for name, state in (await self._read(work, ns, list(names))).items():
                cache[names[name]] = state
        for key, start in closing:
            state = cache.get((key, start))
            if state is None or state[3]:
                continue  # merged away, or closed from another partition
            state[3] = 1
            work.writes.append(_new(KVWrite, (ns, f"{key}{SEP}{start:015d}", _encode(state))))
            self._emit(work, key, state[0], state[1], state[2])

    async def _close_sliding(self, closing: list[tuple[str, int]], work: UnitOfWork) -> None:
        view, ns = self.view, self.layout.state
        bufs = self._buffers
        missing = list({k for k, _ in closing if k not in bufs})
        if missing:
            got = await self._read(work, self.layout.buf, missing)
            for k in missing:
                bufs[k] = got.get(k, [])
            self._buf_dirty.update(missing)
        done = await self._read(work, ns, [f"{k}{SEP}{s:015d}" for k, s in closing])
        for key, start in closing:
            skey = f"{key}{SEP}{start:015d}"
            if skey in done:
                continue
            end = start + self.size
            acc = view.initial()
            for t, raw in bufs[key]:
                if start <= t <= end:
                    try:
                        acc = view.add(acc, msgspec.convert(raw, Event))
                    except Exception as exc:
                        log.warning("view %s: the fold raised %s on a buffered event; "
                                    "left out of the window", view.name, exc)
            work.writes.append(_new(KVWrite, (ns, skey, _encode([start, end, acc, 1]))))
            self._emit(work, key, start, end, acc)

    def _emit(self, work: UnitOfWork, key: str, start: int, end: int, value: Any) -> None:
        target = self.view.emit_to
        if target is None:
            return
        name = self.view.name
        ended = iso(end)
        tenant, _, plain = key.rpartition(TENANT)
        event = {  # the wire form of an Event, built directly (one per closed window)
            "type": f"view.{name}", "source": f"setpiece/views/{name}",
            "data": {"key": plain, "start": iso(start), "end": ended, "value": value},
            "id": f"{name}:{self.layout.fp}:{key}:{start}", "time": ended, "specversion": "1.0",
            "partitionkey": plain,
        }
        if tenant:
            event["tenant"] = tenant
        work.appends.append((source_stream(target), plain, _encode(event)))


def _retry() -> Any:
    from setpiece.policy import RetryPolicy

    return RetryPolicy()


_RETRY = _retry()
