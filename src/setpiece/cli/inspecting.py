"""The commands that only look: ``inspect``, ``tail``, ``dlq list`` / ``show``.

They open the engine directly and never start consumers, so they create no consumer group and
join none (a running worker's partitions do not move because someone looked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from setpiece._assembly import Runtime, new_runtime
from setpiece.bus import bus_stream_name
from setpiece.cli._common import CliError
from setpiece.engine.contract import Engine, Record
from setpiece.event import Event
from setpiece.runtime.consumer import DEAD_LETTERS
from setpiece.runtime.letters import DeadLetter
from setpiece.stack import Stack

__all__ = ["dead_letters", "inspect_stack", "letter_dict", "record_dict", "tail"]


# -- inspect ----------------------------------------------------------------------------------


async def inspect_stack(stack: Stack, engine: Engine) -> dict[str, Any]:
    """Everything ``setpiece inspect`` shows, as plain data (its ``--json`` form)."""
    streams: list[dict[str, Any]] = []
    ends_of: dict[str, list[int]] = {}
    for spec in await engine.streams():
        starts = await engine.start_offsets(spec.name)
        ends = ends_of[spec.name] = await engine.end_offsets(spec.name)
        streams.append({
            "name": spec.name, "partitions": spec.partitions, "retention": spec.retention,
            "start_offsets": starts, "end_offsets": ends,
            "records": sum(e - s for s, e in zip(starts, ends, strict=True)),
        })
    groups: list[dict[str, Any]] = []
    lag_of: dict[tuple[str, str], int] = {}
    for group, stream in sorted(await engine.groups()):
        committed = await engine.committed(group, stream)
        ends = ends_of.get(stream) or await engine.end_offsets(stream)
        lag = sum(max(0, end - committed.get(p, 0)) for p, end in enumerate(ends))
        lag_of[(group, stream)] = lag
        groups.append({
            "group": group, "stream": stream,
            "committed": [committed.get(p, 0) for p in range(len(ends))], "lag": lag,
        })
    buses = []
    for bus in stack.buses.values():
        rules = [{
            "name": rule.name,
            "pattern": _plain(rule.pattern),
            "targets": [_target(t) for t in rule.targets],
            "transform": rule.transform is not None,
        } for rule in bus.rules]
        buses.append({
            "name": bus.name, "stream": bus_stream_name(bus.name), "partitions": bus.partitions,
            "archive_retention": bus.archive_retention, "rules": rules,
            "handlers": [h.qualname for s in stack.services.values() for h in s.handlers
                         if h.kind == "event" and h.bus == bus.name],
        })
    services = []
    for service in stack.services.values():
        handlers = []
        for h in service.handlers:
            item: dict[str, Any] = {"name": h.name, "qualname": h.qualname, "kind": h.kind}
            source: str | None = None
            if h.kind == "event":
                assert h.bus is not None
                source = bus_stream_name(h.bus)
                item.update(bus=h.bus, pattern=_plain(h.pattern))
            elif h.kind == "stream":
                source = h.stream
                item.update(stream=h.stream)
            else:
                item.update(every=h.every, cron=h.cron)
            if source is not None:
                item["lag"] = lag_of.get((h.qualname, source))  # None: never started
            handlers.append(item)
        services.append({"name": service.name, "version": service.version,
                         "handlers": handlers})
    return {
        "stack": stack.name, "engine": engine.url, "streams": streams, "groups": groups,
        "buses": buses, "services": services, "views": _views(stack, lag_of),
        "declared_streams": [{"name": s.name, "partitions": s.partitions}
                             for s in stack.streams.values()],
    }


def _views(stack: Stack, lag_of: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """The stack's views: kind, what they read and write, and their consumers' lag."""
    from setpiece.views._state import Layout, source_stream
    from setpiece.views.declarations import Aggregate, Join, StreamJoin, Table, TableJoin

    out: list[dict[str, Any]] = []
    for view in stack.views.values():
        item: dict[str, Any] = {"name": view.name, "kind": type(view).__name__}
        consumers: list[tuple[str, str]] = []
        if isinstance(view, TableJoin):
            item["reads"] = [view.left.name, view.right.name]
        elif isinstance(view, StreamJoin):
            group = Layout(view).group
            item.update(reads=[view.left.name, view.right.name], emit_to=view.emit_to.name,
                        within=view.within)
            consumers = [(f"{group}.left", source_stream(view.left)),
                         (f"{group}.right", source_stream(view.right))]
        else:
            item["reads"] = [view.source.name]
            consumers = [(Layout(view).group, source_stream(view.source))]
            if isinstance(view, Aggregate):
                item["window"] = repr(view.window)
            if isinstance(view, Aggregate | Join) and view.emit_to is not None:
                item["emit_to"] = view.emit_to.name
            if isinstance(view, Join):
                item["table"] = view.table.name
            if isinstance(view, Table) and view.ttl is not None:
                item["ttl"] = view.ttl
        if consumers:
            lags = [lag_of.get(c) for c in consumers]
            item["lag"] = None if any(lag is None for lag in lags) else sum(
                lag for lag in lags if lag is not None)
            item["groups"] = [g for g, _ in consumers]
        out.append(item)
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return msgspec.to_builtins(dict(value))


def _target(target: Any) -> str:
    from setpiece.bus import Bus, HttpTarget
    from setpiece.stream import Stream

    if isinstance(target, Stream):
        return f"stream:{target.name}"
    if isinstance(target, Bus):
        return f"bus:{target.name}"
    if isinstance(target, HttpTarget):
        return f"http:{target.url}"
    return repr(target)


# -- tail -------------------------------------------------------------------------------------


def record_dict(record: Record) -> dict[str, Any]:
    """A record as JSON-ready data: position, and the event (CloudEvents form) or raw value."""
    out: dict[str, Any] = {
        "stream": record.stream, "partition": record.partition, "offset": record.offset,
        "key": record.key, "timestamp": record.timestamp,
    }
    try:
        raw = msgspec.json.decode(record.value)
    except msgspec.DecodeError:
        out["raw"] = record.value.decode("utf-8", "replace")
        return out
    try:
        out["event"] = msgspec.convert(raw, Event).to_dict()
    except (msgspec.ValidationError, TypeError):
        out["value"] = raw
    return out


async def tail(
    engine: Engine,
    stream: str,
    *,
    pattern: Any,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
    emit: Callable[[Record], None],
) -> int:
    """Show a stream's records (matching ``pattern``) as they arrive; returns how many."""
    known = {s.name: s for s in await engine.streams()}
    if stream not in known:
        raise CliError(f"the engine has no stream {stream!r} (streams: {sorted(known)})")
    positions = await (engine.start_offsets(stream) if from_beginning
                       else engine.end_offsets(stream))
    shown = 0
    while True:
        batch: list[Record] = []
        for partition, offset in enumerate(positions):
            records = await engine.read(stream, partition, offset, 500)
            if records:
                positions[partition] = records[-1].offset + 1
                batch.extend(records)
        batch.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        for record in batch:
            if pattern is not None and not _matches(pattern, record):
                continue
            emit(record)
            shown += 1
            if limit is not None and shown >= limit:
                return shown
        if not batch:
            if not follow:
                return shown
            await engine.wait([stream], 1.0)


def _matches(pattern: Any, record: Record) -> bool:
    try:
        raw = msgspec.json.decode(record.value)
    except msgspec.DecodeError:
        return False
    return isinstance(raw, dict) and bool(pattern.matches(_match_view(raw)))


def _match_view(raw: dict[str, Any]) -> dict[str, Any]:
    """What a rule's pattern sees (as the runtime builds it, and ``Event.pattern_view``):
    extensions flat, EventBridge's ``detail-type`` and ``detail`` added."""
    view = dict(raw)
    extensions = view.pop("extensions", None)
    if isinstance(extensions, dict):
        for name, value in extensions.items():
            view.setdefault(name, value)
    view["detail-type"] = raw.get("type")
    view["detail"] = raw.get("data")
    return view


# -- dead letters -----------------------------------------------------------------------------


def tool_runtime(stack: Stack, engine: Engine) -> Runtime:
    """A runtime that is never started: its tools (dead letters, replay) only use the engine."""
    return new_runtime(stack, engine)


async def dead_letters(stack: Stack, engine: Engine, *, include_redriven: bool) -> list[DeadLetter]:
    if DEAD_LETTERS not in {s.name for s in await engine.streams()}:
        return []
    return await tool_runtime(stack, engine).dead_letters(include_redriven=include_redriven)


def letter_dict(letter: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": letter.id, "time": letter.time, "handler": letter.handler, "group": letter.group,
        "stream": letter.stream, "attempts": letter.attempts, "error": letter.error,
        "type": letter.event.type if letter.event else None,
        "event_id": letter.event.id if letter.event else None,
    }
    if full:
        out["event"] = letter.event.to_dict() if letter.event else None
        out["raw"] = letter.raw
        out["traceback"] = letter.traceback
    return out
