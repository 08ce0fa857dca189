"""Commands on aggregates: from outside (``rt.aggregate(name, id)``, each command its own
transaction, retried from fresh state on a conflict by the aggregate's policy) and from inside a
delivery (``ctx.aggregate(name, id)`` in a handler, an HTTP route or a workflow task: the events
commit with the delivery, and a conflict runs the delivery again)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from setpiece.engine.contract import Engine, EventAppend, KVRead, UnitOfWork
from setpiece.errors import ConfigError, ConflictError
from setpiece.event import Event
from setpiece.runtime.unit import Attempt
from setpiece.sourcing._kind import AggregateKind, Decided, Loaded

__all__ = ["AggregateHandle", "DeliveryAggregates", "execute_many", "kind_named"]


def kind_named(kinds: Mapping[str, AggregateKind], name: Any) -> AggregateKind:
    found = kinds.get(name) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(
            f"the stack has no aggregate {name!r} (aggregates: {sorted(kinds)})"
        )
    return found


class AggregateHandle:
    """One aggregate, from outside any delivery: ``await .execute(command)``, ``await .load()``."""

    __slots__ = ("_engine", "_kind", "_notify", "id")

    def __init__(
        self, kind: AggregateKind, id: str, engine: Engine, notify: Callable[[], None]
    ) -> None:
        self._kind = kind
        self.id = kind.check_id(id)
        self._engine = engine
        self._notify = notify

    async def load(self) -> tuple[Any, int]:
        """The current (state, version); version 0 and the initial state if it has no events.

        A snapshot that is due (none yet, or one of older state code) is written on the way.
        """
        kind, engine = self._kind, self._engine
        loaded = await kind.load(engine, self.id)
        write = kind.snapshot(self.id, loaded.version, loaded.version, loaded.state, loaded)
        if write is not None:
            # Only if no one wrote the snapshot meanwhile; else theirs is as good.
            with contextlib.suppress(ConflictError):
                await engine.commit(UnitOfWork(
                    reads=[KVRead(write.namespace, write.key, loaded.snapshot_kv_version)],
                    writes=[write],
                ))
        return loaded.state, loaded.version

    async def events(self, after: int = 0) -> list[Event]:
        """The aggregate's events (upcast), from version ``after + 1`` on."""
        kind = self._kind
        return [kind.read(raw) for _, raw in
                await self._engine.read_events(kind.events_ns, self.id, after=after)]

    async def execute(self, command: Any) -> int:
        """Decide ``command`` on the current state and store its events; returns the new version.

        If ``decide`` raises, nothing is written and the error reaches the caller. When another
        writer appends first, the command runs again on the fresh state, as the aggregate's
        retry policy allows (then ConflictError).
        """
        return (await execute_many(self._kind, self._engine, [(self.id, command)],
                                   self._notify))[0]


async def execute_many(
    kind: AggregateKind, engine: Engine, commands: Iterable[tuple[str, Any]],
    notify: Callable[[], None] = lambda: None,
) -> list[int]:
    """Run commands on aggregates of one type in ONE transaction, in order; returns the version
    after each. All or nothing: if one ``decide`` raises, nothing is written. On a conflict,
    the whole batch runs again from fresh state (the aggregate's retry policy)."""
    todo = [(kind.check_id(id), command) for id, command in commands]
    ids = list(dict.fromkeys(id for id, _ in todo))
    policy = kind.aggregate.retry
    attempt = 0
    from_cache = True
    while True:
        attempt += 1
        # From the cache at first (checked by the expected versions), then from the store.
        loaded = kind.take(ids) if from_cache else {}
        cached, from_cache = bool(loaded), False
        loaded.update(await kind.load_many(engine, [i for i in ids if i not in loaded]))
        try:
            work, after, versions = _decide_all(kind, loaded, todo)
            if work.events:
                await engine.commit(work)
        except ConflictError as exc:
            if cached:  # a stale cache entry: not a race the policy should count
                attempt -= 1
                continue
            if attempt >= policy.max_attempts:
                raise ConflictError(
                    f"aggregate {kind.name!r}: still conflicting after {attempt} attempts "
                    f"({exc})"
                ) from None
            await asyncio.sleep(policy.delay(attempt))
            continue
        if work.events:
            notify()
        kind.keep(after)
        return versions


def _decide_all(
    kind: AggregateKind, loaded: dict[str, Loaded], todo: list[tuple[str, Any]]
) -> tuple[UnitOfWork, dict[str, Loaded], list[int]]:
    """Decide every command in order on the states it leaves: the unit of work that stores
    their events, the states after it, and the version after each command."""
    current = {id: (found.state, found.version) for id, found in loaded.items()}
    decided: dict[str, list[Decided]] = {}
    versions: list[int] = []
    for id, command in todo:
        state, version = current[id]
        outcome = kind.decide(state, command, id, version, cause=None, service=None)
        if outcome.events:
            decided.setdefault(id, []).append(outcome)
            version += len(outcome.events)
        current[id] = (outcome.state, version)
        versions.append(version)
    work = UnitOfWork()
    after: dict[str, Loaded] = {}
    for id, outcomes in decided.items():
        found = loaded[id]
        encoded = [raw for outcome in outcomes for raw in outcome.encoded]
        work.events.append(EventAppend(kind.events_ns, id, found.version, tuple(encoded)))
        for outcome in outcomes:
            work.appends.extend(kind.records(outcome))
        state, version = current[id]
        snapshot = kind.snapshot(id, found.version, version, state, found)
        if snapshot is not None:
            work.writes.append(snapshot)
        after[id] = Loaded(state, version, (version, 0) if snapshot else found.snapshot, 0)
    return work, after, versions


class DeliveryAggregates:
    """The context service: aggregates seen from one delivery attempt (``ctx.aggregate``)."""

    __slots__ = ("_attempt", "_engine", "_kinds")

    def __init__(
        self, kinds: Mapping[str, AggregateKind], engine: Engine, attempt: Attempt
    ) -> None:
        self._kinds = kinds
        self._engine = engine
        self._attempt = attempt

    def handle(self, name: str, id: str, *, cause: Event, service: str) -> DeliveryAggregate:
        return DeliveryAggregate(kind_named(self._kinds, name), id, self, cause, service)


class DeliveryAggregate:
    """One aggregate inside a delivery: commands commit with the delivery, or not at all."""

    __slots__ = ("_cause", "_kind", "_owner", "_service", "id")

    def __init__(
        self, kind: AggregateKind, id: str, owner: DeliveryAggregates, cause: Event,
        service: str,
    ) -> None:
        self._kind = kind
        self.id = kind.check_id(id)
        self._owner = owner
        self._cause = cause
        self._service = service

    async def _load(self) -> Loaded:
        """Committed state, then what this batch and attempt appended and did not commit yet."""
        kind, attempt = self._kind, self._owner._attempt
        loaded = await kind.load(self._owner._engine, self.id)
        pending = attempt.pending_events(kind.events_ns, self.id)
        if pending is not None:
            follows, raws = pending
            if follows != loaded.version:  # committed meanwhile by someone else
                raise ConflictError(
                    f"aggregate {kind.name!r} {self.id!r}: changed while this batch ran"
                )
            loaded.state = kind.fold(loaded.state, raws)
            loaded.version += len(raws)
        return loaded

    async def load(self) -> tuple[Any, int]:
        """The (state, version) this delivery sees (its own uncommitted commands included)."""
        loaded = await self._load()
        return loaded.state, loaded.version

    async def execute(self, command: Any) -> int:
        """Decide ``command``; its events commit with this delivery. Returns the new version."""
        kind, attempt = self._kind, self._owner._attempt
        loaded = await self._load()
        outcome = kind.decide(loaded.state, command, self.id, loaded.version,
                              cause=self._cause, service=self._service)
        if not outcome.events:
            return loaded.version
        after = loaded.version + len(outcome.events)
        attempt.append_events(kind.append(self.id, loaded.version, outcome))
        for stream, key, raw in kind.records(outcome):
            attempt.emit(stream, key, raw)
        snapshot = kind.snapshot(self.id, loaded.version, after, outcome.state, loaded)
        if snapshot is not None:
            attempt.put((snapshot.namespace, snapshot.key), snapshot.value)
        return after
