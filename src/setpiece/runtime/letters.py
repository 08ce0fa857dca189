"""Dead letters (listing and redriving them) and the replay of a bus's archive.

Functions over an engine, so that tools (``setpiece dlq``, ``setpiece replay``) use them without
a running stack; the :class:`~setpiece.Runtime` offers the same as methods.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from setpiece.bus import bus_stream_name
from setpiece.engine.contract import Engine, KVWrite, UnitOfWork
from setpiece.errors import ConfigError, EventError
from setpiece.event import Event, encode_event
from setpiece.runtime.consumer import DEAD_LETTERS, REPLAY_MARK, RULE_MARK, TARGET_MARK

if TYPE_CHECKING:
    from setpiece.stack import Stack

__all__ = ["DeadLetter", "list_dead_letters", "redrive", "replay"]

REDRIVEN = "setpiece.redriven"  # the namespace marking dead letters already redriven


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that failed for good, with why. ``id`` names it for :meth:`Runtime.redrive`."""

    id: str
    event: Event | None
    error: str
    traceback: str
    handler: str
    group: str | None
    stream: str | None
    attempts: int
    time: str
    raw: str | None = None


async def list_dead_letters(engine: Engine, *, include_redriven: bool = False) -> list[DeadLetter]:
    """Dead letters, oldest first (those already redriven are left out by default)."""
    redriven = {k for k, _ in await engine.kv_scan(REDRIVEN, "", 1_000_000)}
    out: list[DeadLetter] = []
    offset = (await engine.start_offsets(DEAD_LETTERS))[0]
    while True:
        records = await engine.read(DEAD_LETTERS, 0, offset, 1000)
        if not records:
            return out
        for record in records:
            letter_id = str(record.offset)
            if letter_id in redriven and not include_redriven:
                continue
            raw = msgspec.json.decode(record.value)
            event, text = None, raw.get("raw")
            if raw.get("event"):
                try:
                    event = Event.from_dict(raw["event"])
                except EventError:  # the record held what the edge refuses: listed raw
                    text = msgspec.json.encode(raw["event"]).decode()
            out.append(
                DeadLetter(
                    id=letter_id, event=event, error=raw["error"],
                    traceback=raw["traceback"], handler=raw["handler"],
                    group=raw.get("group"), stream=raw.get("stream"),
                    attempts=raw["attempts"], time=raw["time"], raw=text,
                )
            )
        offset = records[-1].offset + 1


async def redrive(engine: Engine, ids: Iterable[str] | None = None) -> int:
    """Send dead-lettered events back to the consumer that failed them; returns how many.

    Each goes back onto its stream aimed at that one consumer group (others ignore it), and
    is marked redriven in the same transaction.
    """
    wanted = None if ids is None else set(ids)
    letters = [
        d for d in await list_dead_letters(engine)
        if (wanted is None or d.id in wanted) and d.event is not None and d.stream
    ]
    if not letters:
        return 0
    unit = UnitOfWork()
    for letter in letters:
        assert letter.event is not None and letter.stream is not None
        extensions = dict(letter.event.extensions or {})
        if letter.group is not None:
            extensions[TARGET_MARK] = letter.group
        event = letter.event.replace(extensions=extensions or None)
        unit.appends.append((letter.stream, event.partitionkey, encode_event(event)))
        unit.writes.append(_redriven_mark(letter.id))
    await engine.commit(unit)
    return len(letters)


async def replay(
    engine: Engine,
    stack: Stack,
    *,
    bus: str | None = None,
    start: datetime | float,
    end: datetime | float | None = None,
    rule: str | None = None,
    name: str | None = None,
) -> int:
    """Re-send a bus's archived events from ``[start, end)`` through its rules.

    With ``rule``, only that rule (or ``service.handler``) receives them. Replayed events keep
    their ids but are deduplicated per replay ``name``, so handlers see them once more.
    Returns how many events were replayed.
    """
    bus_name = bus or stack.default_bus
    if bus_name not in stack.buses:
        raise ConfigError(f"replay: the stack has no bus {bus_name!r}")
    stream = bus_stream_name(bus_name)
    t0 = start.timestamp() if isinstance(start, datetime) else float(start)
    t1 = (end.timestamp() if isinstance(end, datetime) else float(end)) if end else time.time()
    replay_name = name or f"replay-{int(time.time() * 1000)}"
    firsts = await engine.offsets_for_time(stream, t0)
    lasts = await engine.offsets_for_time(stream, t1)
    records: list[tuple[str, str | None, bytes]] = []
    for partition, (first, last) in enumerate(zip(firsts, lasts, strict=True)):
        offset = first
        while offset < last:
            batch = await engine.read(stream, partition, offset, min(1000, last - offset))
            if not batch:
                break
            for record in batch:
                if record.offset >= last:
                    break
                event = msgspec.json.decode(record.value, type=Event)
                extensions = dict(event.extensions or {})
                if REPLAY_MARK in extensions:
                    continue  # replays are not replayed again
                extensions[REPLAY_MARK] = replay_name
                if rule is not None:
                    extensions[RULE_MARK] = rule
                replayed = event.replace(extensions=extensions)
                records.append((stream, replayed.partitionkey, encode_event(replayed)))
            offset = batch[-1].offset + 1
    for start_at in range(0, len(records), 1000):
        await engine.commit(UnitOfWork(appends=records[start_at : start_at + 1000]))
    return len(records)


def _redriven_mark(letter_id: str) -> KVWrite:
    return KVWrite(REDRIVEN, letter_id, b"1")
