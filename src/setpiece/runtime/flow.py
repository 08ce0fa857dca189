"""What flowed through a runtime: the events published on its buses and streams since it started.

When the runtime starts it notes the end offset of every stream its stack declares (each bus is
backed by one); :class:`Flow` reads from there, on demand, whatever was appended since: events
published from outside, emitted by handlers, forwarded by rules. Nothing runs in the background
and nothing is read until someone asks (``rt.published`` / ``rt.expect``, mostly tests).
Re-sent copies (a redrive, a replay) are not new events and are left out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from setpiece.engine.contract import Engine
from setpiece.event import Event
from setpiece.patterns import Pattern, compile
from setpiece.patterns._nearest import nearest
from setpiece.runtime.consumer import REPLAY_MARK, RULE_MARK, TARGET_MARK
from setpiece.runtime.reader import _match_view

__all__ = ["Flow", "Flowed"]

_decode = msgspec.json.Decoder().decode
_READ = 1000  # records per read
_SHOWN = 5  # nearest events a failed expectation prints
_MARKS = (TARGET_MARK, REPLAY_MARK, RULE_MARK)


@dataclass(frozen=True, slots=True)
class Flowed:
    """One event that flowed: where it was published (``bus orders``, ``stream points``)."""

    where: str
    event: Event
    view: dict[str, Any]  # what a rule's pattern sees: extensions flat, detail-type added


class Flow:
    """The events appended to ``streams`` (engine stream name -> where) since :meth:`mark`."""

    def __init__(self, engine: Engine, streams: Mapping[str, str]) -> None:
        self.engine = engine
        self.streams = dict(streams)
        self._next: dict[tuple[str, int], int] = {}
        self.seen: list[Flowed] = []

    async def mark(self) -> None:
        """Start here: what is already in the streams is not part of the flow."""
        for stream in self.streams:
            for partition, end in enumerate(await self.engine.end_offsets(stream)):
                self._next[(stream, partition)] = end

    async def catch_up(self) -> None:
        """Read what was appended since the last call into :attr:`seen`, oldest first."""
        found: list[tuple[float, Flowed]] = []
        for (stream, partition), offset in list(self._next.items()):
            while True:
                records = await self.engine.read(stream, partition, offset, _READ)
                for record in records:
                    flowed = self._flowed(stream, record.value)
                    if flowed is not None:
                        found.append((record.timestamp, flowed))
                if records:
                    offset = records[-1].offset + 1
                    self._next[(stream, partition)] = offset
                if len(records) < _READ:
                    break
        found.sort(key=lambda item: item[0])  # stable: a partition's order is kept
        self.seen += [flowed for _, flowed in found]

    def _flowed(self, stream: str, value: bytes) -> Flowed | None:
        try:
            raw = _decode(value)
            if not isinstance(raw, dict):
                return None
            extensions = raw.get("extensions")
            if isinstance(extensions, dict) and any(mark in extensions for mark in _MARKS):
                return None  # a redriven or replayed copy of an event seen before
            event = msgspec.convert(raw, Event)
            return Flowed(self.streams[stream], event, _match_view(dict(raw)))
        except Exception:  # not an event (something else appended it): not part of the flow
            return None

    async def published(self, pattern: object | None = None) -> list[Event]:
        await self.catch_up()
        if pattern is None:
            return [flowed.event for flowed in self.seen]
        compiled = compile(pattern)
        return [flowed.event for flowed in self.seen if _matches(compiled, flowed)]

    async def expect(self, pattern: object, timeout: float) -> Event:
        __tracebackhide__ = True  # pytest: a failure points at the test, not here
        compiled = compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            await self.catch_up()
            for flowed in self.seen[checked:]:
                if _matches(compiled, flowed):
                    return flowed.event
            checked = len(self.seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(self.report(compiled, timeout))
            await self.engine.wait(list(self.streams), min(remaining, 0.25))

    def report(self, pattern: Pattern, timeout: float) -> str:
        """Why an expectation failed: the events that flowed nearest to ``pattern``."""
        head = (f"no event matching {pattern.source!r} was published within {timeout:g} s "
                f"({len(self.seen)} events since the stack started")
        if not self.seen:
            return head + ")"
        views = [flowed.view for flowed in self.seen]
        lines = [head + f"; the nearest {min(_SHOWN, len(views))}:"]
        for index, matched, tested in nearest(pattern, views, _SHOWN):
            flowed = self.seen[index]
            text = flowed.event.to_json().decode()
            if len(text) > 400:
                text = text[:400] + "…"
            lines.append(f"  {matched} of {tested} fields match, on {flowed.where}: {text}")
        return "\n".join(lines)


def _matches(pattern: Pattern, flowed: Flowed) -> bool:
    try:
        return pattern.matches(flowed.view)
    except Exception:  # too deep to match, ...: it does not match
        return False
