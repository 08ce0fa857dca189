"""One aggregate type at run time: reading its events (decoded, upcast) and folding them into
state, deciding a command's events, and the engine work that stores them (the event-sequence
append, the outbox records that publish them, a snapshot every N events)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from setpiece.context import check_key
from setpiece.engine.contract import Engine, EventAppend, KVWrite
from setpiece.errors import ConfigError, EventError
from setpiece.event import Event, decode_event
from setpiece.runtime.outgoing import encode_checked, prepare
from setpiece.sourcing.aggregate import Aggregate

__all__ = ["AggregateKind", "Decided", "Loaded", "events_namespace", "snapshots_namespace"]

_encode = msgspec.json.encode
_replace = msgspec.structs.replace
_decode = msgspec.json.decode
#: Extension attributes every stored event carries: its aggregate type and version.
AGGREGATE_ATTR = "aggregate"
VERSION_ATTR = "aggregateversion"


def events_namespace(aggregate: str) -> str:
    """The engine's event-sequence namespace of an aggregate type."""
    return f"agg:{aggregate}"


def snapshots_namespace(aggregate: str) -> str:
    """The key-value namespace that holds an aggregate type's snapshots."""
    return f"agg-snap:{aggregate}"


@dataclass(slots=True)
class Loaded:
    """An aggregate's state at ``version``; ``snapshot``: (version, kv version) of the usable
    snapshot it started from, or None (folded from the first event)."""

    state: Any
    version: int
    snapshot: tuple[int, int] | None
    snapshot_kv_version: int  # the snapshot key's version as read (0: absent)


@dataclass(slots=True)
class Decided:
    """A command's outcome: its events (as stored) and the state after them."""

    events: list[Event]
    encoded: list[bytes]
    state: Any


class AggregateKind:
    """An :class:`~setpiece.sourcing.Aggregate` in one runtime."""

    def __init__(self, aggregate: Aggregate, *, stack: str, stream: str, max_bytes: int) -> None:
        self.aggregate = aggregate
        self.name = aggregate.name
        self.stream = stream  # the bus's stream, where the events are published
        self.source = f"{stack}/{aggregate.name}"
        self.max_bytes = max_bytes
        self.events_ns = events_namespace(aggregate.name)
        self.snapshots_ns = snapshots_namespace(aggregate.name)
        self.every = aggregate.snapshots.every if aggregate.snapshots else 0
        # The state after the last command committed from here, per id (least recent first).
        self._cache: dict[str, Loaded] = {}

    # -- the command-side cache -------------------------------------------------------------

    def take(self, ids: list[str]) -> dict[str, Loaded]:
        """The cached states of ``ids``, removed from the cache (put back after a commit)."""
        cache = self._cache
        return {id: found for id in ids if (found := cache.pop(id, None)) is not None}

    def keep(self, loaded: dict[str, Loaded]) -> None:
        limit = self.aggregate.cache
        if not limit:
            return
        cache = self._cache
        cache.update(loaded)
        while len(cache) > limit:
            del cache[next(iter(cache))]

    # -- reading ----------------------------------------------------------------------------

    def check_id(self, id: Any) -> str:
        try:
            return check_key(id)
        except ValueError as exc:
            raise type(exc)(f"aggregate {self.name!r}: id: {exc}") from None

    def upcast(self, event: Event) -> Event:
        """The current form of a stored event (its upcasters applied in chain)."""
        upcasters = self.aggregate.upcasters
        for _ in range(len(upcasters) + 1):
            upcaster = upcasters.get((event.type, event.dataversion))
            if upcaster is None:
                return event
            try:
                upcast = upcaster.upcast(event)
            except Exception as exc:
                raise EventError(
                    f"aggregate {self.name!r}: the upcaster of {event.type!r} version "
                    f"{event.dataversion!r} failed on event {event.id}: "
                    f"{type(exc).__name__}: {exc}",
                    field="dataversion",
                ) from exc
            if not isinstance(upcast, Event):
                raise EventError(
                    f"aggregate {self.name!r}: the upcaster of {event.type!r} version "
                    f"{event.dataversion!r} returned {type(upcast).__name__}, not an Event",
                    field="dataversion",
                )
            if (upcast.type, upcast.dataversion) == (event.type, event.dataversion):
                raise EventError(
                    f"aggregate {self.name!r}: the upcaster of {event.type!r} version "
                    f"{event.dataversion!r} must change the type or the dataversion",
                    field="dataversion",
                )
            event = upcast
        raise EventError(f"aggregate {self.name!r}: upcasters of {event.type!r} loop",
                         field="dataversion")

    def read(self, raw: bytes) -> Event:
        return self.upcast(decode_event(raw))

    def evolve(self, state: Any, event: Event) -> Any:
        evolve = self.aggregate.evolve
        if isinstance(evolve, Mapping):
            fn = evolve.get(event.type)
            if fn is None:
                raise EventError(
                    f"aggregate {self.name!r}: no evolve for event type {event.type!r} "
                    f"(it has {sorted(evolve)})",
                    field="type",
                )
        else:
            fn = evolve
        try:
            return fn(state, event)
        except Exception as exc:
            raise EventError(
                f"aggregate {self.name!r}: evolve failed on event type {event.type!r}: "
                f"{type(exc).__name__}: {exc}",
                field="type",
            ) from exc

    def fold(self, state: Any, raws: list[bytes]) -> Any:
        read, evolve = self.read, self.evolve
        for raw in raws:
            state = evolve(state, read(raw))
        return state

    async def load_many(self, engine: Engine, ids: list[str]) -> dict[str, Loaded]:
        """:meth:`load` of many aggregates (their snapshots read in one call)."""
        snapshots = await engine.kv_get(self.snapshots_ns, ids) if self.every and ids else {}
        return {id: await self.load(engine, id, snapshots.get(id, False)) for id in ids}

    async def load(
        self, engine: Engine, id: str, snapshot_row: tuple[bytes, int] | bool | None = False
    ) -> Loaded:
        """The committed state: the snapshot (if of this code's version), then the events.
        ``snapshot_row``: the snapshot's row if already read (None: absent)."""
        state: Any = None
        base, snapshot, kv_version = 0, None, 0
        if self.every:
            found = (
                (await engine.kv_get(self.snapshots_ns, [id])).get(id)
                if snapshot_row is False else snapshot_row
            )
            if isinstance(found, tuple):
                kv_version = found[1]
                try:
                    code, at, saved = _decode(found[0])
                except (msgspec.DecodeError, ValueError, TypeError):
                    code = None  # unreadable: folded again, and replaced
                if code == self.aggregate.state_version:
                    state, base, snapshot = saved, at, (at, kv_version)
        if snapshot is None:
            state = self.aggregate.initial()
        rows = await engine.read_events(self.events_ns, id, after=base)
        if rows and rows[-1][0] != base + len(rows):
            raise EventError(f"aggregate {self.name!r} {id!r}: event versions are not dense")
        state = self.fold(state, [raw for _, raw in rows])
        return Loaded(state, base + len(rows), snapshot, kv_version)

    # -- deciding ---------------------------------------------------------------------------

    def decide(
        self, state: Any, command: Any, id: str, version: int, *,
        cause: Event | None, service: str | None,
    ) -> Decided:
        """Run ``decide`` (its errors reach the caller), check and encode the events, and fold
        them (an event evolve cannot take fails here, before anything is written)."""
        answer = self.aggregate.decide(state, command)
        if answer is None:
            decided: list[Any] = []
        elif isinstance(answer, Event):
            decided = [answer]
        else:
            try:
                decided = list(answer)
            except TypeError:
                raise EventError(
                    f"aggregate {self.name!r}: decide must return an Event, a list of Events "
                    f"or None, got {type(answer).__name__}"
                ) from None
        events: list[Event] = []
        encoded: list[bytes] = []
        for n, event in enumerate(decided, 1):
            if not isinstance(event, Event):
                raise EventError(
                    f"aggregate {self.name!r}: decide returned {type(event).__name__}, "
                    "not an Event"
                )
            extensions = dict(event.extensions) if event.extensions else {}
            extensions[AGGREGATE_ATTR] = self.name
            extensions[VERSION_ATTR] = version + n
            # Every value set here is a str or this dict: no type check is needed on replace.
            event = _replace(
                event, subject=id, source=event.source or (service or self.source),
                partitionkey=event.partitionkey or id, extensions=extensions,
            )
            ready = (prepare(event, cause=cause, service=service) if cause is not None
                     else event.validate().check_external(None))
            encoded.append(encode_checked(ready, self.max_bytes))
            events.append(ready)
        for event in events:
            state = self.evolve(state, event)
        return Decided(events, encoded, state)

    def append(self, id: str, loaded_version: int, decided: Decided) -> EventAppend:
        return EventAppend(self.events_ns, id, loaded_version, tuple(decided.encoded))

    def records(self, decided: Decided) -> list[tuple[str, str | None, bytes]]:
        stream = self.stream
        return [(stream, e.partitionkey, raw)
                for e, raw in zip(decided.events, decided.encoded, strict=True)]

    def snapshot(
        self, id: str, before: int, after: int, state: Any, loaded: Loaded | None = None
    ) -> KVWrite | None:
        """The snapshot to write with a commit from ``before`` to ``after`` (None: none due).

        Due when the version crosses a multiple of ``every``, or when the state was folded from
        ``every`` events or more past its snapshot (none yet, or of older code)."""
        every = self.every
        if not every or after < every:
            return None
        since = after - (loaded.snapshot[0] if loaded and loaded.snapshot else 0)
        if before // every == after // every and since < every:
            return None
        return KVWrite(self.snapshots_ns, id, self.encode_snapshot(after, state))

    def encode_snapshot(self, version: int, state: Any) -> bytes:
        try:
            return _encode([self.aggregate.state_version, version, state])
        except (TypeError, msgspec.EncodeError) as exc:
            raise ConfigError(
                f"aggregate {self.name!r}: snapshots keep the state as JSON, and this state "
                f"is not JSON ({exc}); make it JSON data or pass snapshots=None"
            ) from None
