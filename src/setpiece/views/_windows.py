"""Windowed aggregates on one partition: stream time, the open windows indexed by the time
they close, the fold of a batch per key and window, and the final results of closed windows.

Used by :class:`~setpiece.views._processor.ViewConsumer` (the batch path); everything a batch
does here lands in its unit of work, and a failed commit drops the partition's state, which is
read afresh.
"""

from __future__ import annotations

import heapq
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.engine.contract import Engine, KVRead, KVWrite, Record, UnitOfWork
from setpiece.errors import ViewError
from setpiece.event import Event
from setpiece.views._state import (
    SEP,
    TENANT,
    _seconds_cache,
    event_ms,
    iso,
    scoped,
    source_stream,
)
from setpiece.views.declarations import Aggregate, Hopping, Session, Sliding, Tumbling

if TYPE_CHECKING:
    from setpiece.views._processor import ViewConsumer

__all__ = ["Partition", "read_versions"]

log = logging.getLogger("setpiece.views")
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_new = tuple.__new__


async def read_versions(engine: Engine, work: UnitOfWork, ns: str, keys: list[str]
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


class Partition:
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
        w = self.view.window
        if isinstance(w, Tumbling | Hopping):
            await self._fold_fixed(decoded, work)
            return
        keyed: list[tuple[Record, Event, str, int]] = []
        for record, event in decoded:
            try:
                key, t = self._key_time(event)
            except Exception as exc:
                self.c._dead(work, record, event, exc)
                continue
            keyed.append((record, event, key, t))
        if isinstance(w, Session):
            await self._fold_sessions(keyed, work)
        else:
            await self._fold_sliding(keyed, work)

    def _key_time(self, event: Event) -> tuple[str, int]:
        """An event's (stored key, time in ms); ViewError naming what is wrong."""
        c = self.c
        try:
            key = self.view.key(event)
        except Exception as exc:
            raise c._key_error(exc) from exc
        good = c.good_keys
        if type(key) is not str or key not in good:
            c.checked_key(key)  # the checks, and their errors
            if len(good) >= 100_000:
                good.clear()
            good.add(key)
        if event.tenant is not None:
            key = scoped(key, event.tenant)
        t = event.time
        # the form events are stored in (``...T12:34:56.123456Z``) inline; else parsed
        seconds = _seconds_cache.get(t[:19]) if len(t) == 27 and t[19] == "." else None
        if seconds is not None and t[26] == "Z" and t[20:26].isdecimal():
            return key, seconds * 1000 + int(t[20:26]) // 1000
        return key, event_ms(event)

    def _late(self, work: UnitOfWork, record: Record, event: Event, t: int, why: str) -> None:
        self.late += 1
        self.c._dead(work, record, event, ViewError(
            f"view {self.view.name!r}: late event (time {iso(t)}, stream time "
            f"{iso(self.stream_time)}, grace {self.grace / 1000:g}s): {why}"))

    async def _read(self, work: UnitOfWork, ns: str, keys: list[str]) -> dict[str, Any]:
        return await read_versions(self.engine, work, ns, keys)

    async def _fold_fixed(self, decoded: list[tuple[Record, Event]],
                          work: UnitOfWork) -> None:
        """Tumbling and hopping windows. One pass groups the events by window (stream time
        moving event by event, late events set aside), one read fetches the windows, and each
        window folds its events in order."""
        ns, c, view = self.layout.state, self.c, self.view
        size, grace = self.size, self.grace
        tumbling = isinstance(view.window, Tumbling)
        key_time = self._key_time
        groups: dict[tuple[str, int], list[tuple[Record, Event]]] = {}
        for record, event in decoded:
            try:
                key, t = key_time(event)
            except Exception as exc:
                c._dead(work, record, event, exc)
                continue
            stream_time = self.stream_time
            if tumbling:
                start = t - t % size
                if start + size + grace <= stream_time:
                    self._late(work, record, event, t, "its window closed")
                    continue
                span = (key, start)
                group = groups.get(span)
                if group is None:
                    groups[span] = [(record, event)]
                else:
                    group.append((record, event))
            else:
                spans = [(key, s) for s, _ in self._windows(t) if s + size + grace > stream_time]
                if not spans:
                    self._late(work, record, event, t, "its windows closed")
                    continue
                for span in spans:
                    groups.setdefault(span, []).append((record, event))
            if t > stream_time:
                self.stream_time = t
        if not groups:
            return
        names = {span: f"{span[0]}{SEP}{span[1]:015d}" for span in groups}
        found = await self._read(work, ns, list(names.values()))
        windows = self._windows_cache
        add, initial, index, writes = view.add, view.initial, self._index, work.writes
        folded: set[int] = set()  # offsets folded into (or failed in) some window
        blocked: list[tuple[Record, Event]] = []
        failed: set[int] = set()
        for span, events in groups.items():
            state = found.get(names[span])
            if state is not None and state[3]:
                blocked += events  # closed from another partition
                continue
            try:
                acc = initial() if state is None else state[2]
            except Exception as exc:
                for record, event in events:
                    if record.offset not in failed:
                        failed.add(record.offset)
                        c._dead(work, record, event, ViewError(
                            f"view {view.name!r}: initial raised {type(exc).__name__}: {exc}"))
                continue
            hit = False
            for record, event in events:
                try:
                    acc = add(acc, event)
                    hit = True
                except Exception as exc:
                    if record.offset not in failed:
                        failed.add(record.offset)
                        c._dead(work, record, event, ViewError(
                            f"view {view.name!r}: the fold raised {type(exc).__name__}: {exc}"))
            if not tumbling:
                folded.update(record.offset for record, _ in events)
            if state is None:
                if not hit:
                    continue
                start = span[1]
                state = [start, start + size, acc, 0]
                index(span[0], start, start + size + grace)
            else:
                state[2] = acc
            windows[span] = state
            writes.append(_new(KVWrite, (ns, names[span], _encode(state))))
        for record, event in blocked:  # every window of the event closed elsewhere: late
            if record.offset not in folded and record.offset not in failed:
                folded.add(record.offset)
                self._late(work, record, event, event_ms(event), "its window closed")

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
