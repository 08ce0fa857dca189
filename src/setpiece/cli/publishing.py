"""The commands that write: ``publish`` and ``replay``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from setpiece._assembly import new_runtime
from setpiece._json import DepthError
from setpiece._json import decode as decode_json
from setpiece.bus import bus_stream_name
from setpiece.cli._common import CliError
from setpiece.engine.contract import Engine
from setpiece.errors import EventError
from setpiece.event import Event
from setpiece.stack import Stack

__all__ = ["parse_events", "parse_time", "publish", "replay"]


def parse_events(text: str, where: str) -> list[Event]:
    """Events from JSON text: one object, an array of objects, or one object per line.

    Each may be CloudEvents structured JSON or EventBridge-shaped. Bad JSON or a bad envelope
    raises CliError / EventError naming the event and the field.
    """
    text = text.strip()
    if not text:
        raise CliError(f"{where}: no event given (empty input)")
    try:
        docs: list[Any] = [decode_json(text, where, extra_levels=2)]
    except DepthError as exc:
        raise EventError(str(exc), field="data") from None
    except msgspec.DecodeError as whole:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise CliError(f"{where}: not valid JSON ({whole})") from None
        docs = []
        for number, line in enumerate(lines, 1):
            try:
                docs.append(decode_json(line, f"{where}, line {number}", extra_levels=1))
            except DepthError as exc:
                raise EventError(str(exc), field="data") from None
            except msgspec.DecodeError as exc:
                raise CliError(f"{where}, line {number}: not valid JSON ({exc})") from None
    if len(docs) == 1 and isinstance(docs[0], list):
        docs = docs[0]
    events = []
    for index, doc in enumerate(docs):
        try:
            events.append(Event.from_dict(doc))
        except EventError as exc:
            prefix = f"event #{index}: " if len(docs) > 1 else ""
            raise EventError(f"{where}: {prefix}{exc}", field=exc.field) from None
    if not events:
        raise CliError(f"{where}: no event given (empty array)")
    return events


async def publish(
    stack: Stack, engine: Engine, events: list[Event], *, bus: str | None, stream: str | None
) -> list[Event]:
    """Publish onto the stack's bus or stream, creating its streams and groups if need be."""
    if bus is not None and stream is not None:
        raise CliError("name a bus or a stream, not both")
    if stream is not None and stream not in stack.streams:
        raise CliError(f"the stack has no stream {stream!r} (streams: {sorted(stack.streams)})")
    if bus is not None and bus not in stack.buses:
        raise CliError(f"the stack has no bus {bus!r} (buses: {sorted(stack.buses)})")
    runtime = new_runtime(stack, engine)
    await runtime.provision()
    return await runtime.publish_many(events, bus=bus, stream=stream)


def parse_time(text: str, option: str) -> float:
    """An ISO 8601 time (``2024-05-01T12:00:00Z``; local time when no offset) or ``now``."""
    if text == "now":
        return time.time()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise CliError(
            f"{option} {text!r}: not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)"
        ) from None


async def replay(
    stack: Stack,
    engine: Engine,
    *,
    bus: str,
    start: float,
    end: float | None,
    rule: str | None,
    name: str | None,
    progress: Callable[[int, int], None],
    slices: int = 20,
) -> int:
    """Replay ``[start, end)`` of a bus's archive in time slices, reporting (done, total).

    Every slice is one :meth:`Runtime.replay` call under the same replay name, so handlers see
    each archived event once more, whichever slice it falls in.
    """
    if bus not in stack.buses:
        raise CliError(f"the stack has no bus {bus!r} (buses: {sorted(stack.buses)})")
    if rule is not None:
        known = {r.name for r in stack.buses[bus].rules} | {
            h.qualname for s in stack.services.values() for h in s.handlers
            if h.kind == "event" and h.bus == bus
        }
        if rule not in known:
            raise CliError(
                f"bus {bus!r} has no rule or handler {rule!r} (known: {sorted(known)})"
            )
    stream = bus_stream_name(bus)
    if stream not in {s.name for s in await engine.streams()}:
        raise CliError(f"bus {bus!r} has no archive yet (nothing was published to it)")
    stop = end if end is not None else time.time()
    if stop <= start:
        raise CliError("--end must be after --start")
    name = name or f"replay-{int(time.time() * 1000)}"
    runtime = new_runtime(stack, engine)
    bounds = [start + (stop - start) * i / slices for i in range(slices + 1)]
    counts = [sum(await engine.offsets_for_time(stream, t)) for t in bounds]
    total = counts[-1] - counts[0]
    progress(0, total)
    done = replayed = 0
    for i in range(slices):
        if counts[i + 1] > counts[i]:
            replayed += await runtime.replay(
                bus=bus, start=bounds[i], end=bounds[i + 1], rule=rule, name=name
            )
            done += counts[i + 1] - counts[i]
            progress(done, total)
    return replayed
