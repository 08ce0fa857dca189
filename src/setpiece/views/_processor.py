"""The batch path that keeps a view up to date: read a big batch of one partition, decode it,
fold it in memory, and commit the state it changed, the events it emits, its dead letters and
the offset in one unit of work.

A :class:`ViewConsumer` is a :class:`~setpiece.runtime.consumer.Consumer` (group membership,
assignment, restarts and draining are the runtime's) whose turn is this batch path instead of a
handler call per event. Keys are read with their versions, so two members folding one key from
two partitions conflict and one of them reads its batch again: effects stay exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from setpiece.clock import Clock
from setpiece.context import check_key
from setpiece.engine.contract import Engine, KVWrite, OffsetCommit, Record, UnitOfWork
from setpiece.errors import ConflictError, ViewError
from setpiece.event import Event, encode_event
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.consumer import (
    REPLAY_MARK,
    RULE_MARK,
    TARGET_MARK,
    Consumer,
    dead_letter_record,
)
from setpiece.runtime.reader import Entry, StreamReader
from setpiece.runtime.unit import Attempt
from setpiece.views._state import (
    SEP,
    TENANT,
    Layout,
    event_ms,
    iso,
    scoped,
    source_stream,
    table_row,
)
from setpiece.views._windows import Partition, read_versions
from setpiece.views.declarations import (
    Aggregate,
    Join,
    SourcedView,
    StreamJoin,
    Table,
)

__all__ = ["BATCH", "ViewConsumer", "source_stream"]  # source_stream: from _state

log = logging.getLogger("setpiece.views")
BATCH = 16384  # records folded per partition per commit (at most)
_decode_event = msgspec.json.Decoder(Event).decode
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_new = tuple.__new__


async def _no_action(event: Event, attempt: Attempt, number: int) -> None:  # pragma: no cover
    raise AssertionError("a view consumer folds batches; it runs no action")


class ViewConsumer(Consumer):
    """One view's consumer group on its source; see the module docstring."""

    def __init__(self, view: SourcedView | StreamJoin, engine: Engine, config: RuntimeConfig,
                 reader: StreamReader, clock: Clock, on_commit: Callable[[], None],
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
            start_at_end=False, on_commit=on_commit, clock=clock,
        )
        self._times: dict[int, int] = {}  # a stream-stream join side's stream time
        self.good_keys: set[str] = set()  # keys that passed the checks of _key
        self._now = clock.time
        self._owned_seen: tuple[int, ...] = ()
        self._parts: dict[int, Partition] = {}
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
            idle = self._idle_wait()
            await self.engine.wait([self.stream], timeout if idle is None else min(timeout, idle))

    def _idle_wait(self) -> float | None:
        """Seconds until a partition may pass the aggregate's idle timeout (a virtual clock
        moves when a test says: looked at every 50 ms of wall time then)."""
        view = self.view
        if not isinstance(view, Aggregate) or view.idle_timeout is None:
            return None
        if self.clock.virtual:
            return 0.05
        now = self._now()
        due = min((t + view.idle_timeout for t in self._last_records.values()), default=now)
        return max(0.0, due - now)

    async def _turn(self, partition: int) -> bool:
        start = self.positions[partition]
        events: list[tuple[Record, Entry | None]]
        if self.accept is None:
            records = await self.engine.read(self.stream, partition, start, BATCH)
            events = [(r, None) for r in records]
        else:
            entries = await self.reader.read(partition, start, BATCH, self.group)
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

    def _raised(self, what: str, exc: Exception) -> ViewError:
        """The error of one of the view's functions (``what``) that raised ``exc``."""
        return ViewError(f"view {self.view.name!r}: {what} raised {type(exc).__name__}: {exc}")

    def _key_error(self, exc: Exception) -> ViewError:
        return self._raised("the key function", exc)

    def _key(self, fn: Callable[[Event], Any], event: Event) -> str:
        try:
            key = fn(event)
        except Exception as exc:
            raise self._key_error(exc) from exc
        return self.checked_key(key)

    def _join_key(self, view: Join | StreamJoin, event: Event) -> str:
        """The stored key ``event`` joins on: its ``key=`` function's, or its partition key."""
        if view.key is None:
            if event.partitionkey is None:
                raise ViewError(f"view {view.name!r}: the event has no partitionkey "
                                "to join on (or give key=)")
            return scoped(event.partitionkey, event.tenant)
        return scoped(self._key(view.key, event), event.tenant)

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
                        raise self._raised("the value function", exc) from exc
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
                keyed.append((record, event, self._join_key(view, event)))
            except Exception as exc:
                self._dead(work, record, event, exc)
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
                self._dead(work, record, event, self._raised("combine", exc))

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
                keyed.append((record, event, self._join_key(view, event), event_ms(event)))
            except Exception as exc:
                self._dead(work, record, event, exc)
        keys = sorted({k for _, _, k, _ in keyed})
        mine = await read_versions(self.engine, work, layout.buf,
                                    [f"{side}{SEP}{k}" for k in keys])
        theirs = await read_versions(self.engine, work, layout.buf,
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
                        self._dead(work, record, event, self._raised("combine", exc))
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

    async def _part(self, partition: int) -> Partition:
        part = self._parts.get(partition)
        if part is None:
            assert isinstance(self.view, Aggregate)
            part = self._parts[partition] = Partition(self, self.view, partition)
            await part.load()
        return part

    async def _close(self, part: Partition, work: UnitOfWork) -> None:
        closing = part.due()
        if closing:
            await part.emit_closed(closing, work)
        part.flush_buffers(work)
        part.committed()  # the batch's reads are spent: the next batch reads afresh


def _retry() -> Any:
    from setpiece.policy import RetryPolicy

    return RetryPolicy()


_RETRY = _retry()
