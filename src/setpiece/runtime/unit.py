"""The uncommitted work of one batch of deliveries, and of each attempt inside it.

A batch commits as one :class:`~setpiece.engine.contract.UnitOfWork`: the store writes of every
successful attempt, the events they emitted, dead letters, inbox entries and the consumer offset.
Attempts run concurrently (different partition keys), so each attempt buffers its own writes and
merges them into the batch only if nothing it read was changed by another attempt meanwhile
(optimistic concurrency in memory); the engine then checks the same against other processes.
A failed attempt is simply dropped: nothing it did survives.

Event-sequence appends (event sourcing) merge the same way: an attempt's append must follow the
batch's pending appends to that sequence (:meth:`Attempt.pending_events` shows them to a reader
inside the batch), else the attempt lost an in-batch race and runs again.
"""

from __future__ import annotations

from setpiece.engine.contract import (
    Engine,
    EventAppend,
    KVRead,
    KVWrite,
    OffsetCommit,
    Timer,
    UnitOfWork,
)

__all__ = ["Attempt", "Batch"]

Key = tuple[str, str]  # (namespace, key)
_tuple_new = tuple.__new__


class Batch:
    """Pending effects of one batch; reads see them before the engine's committed state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.versions: dict[Key, int] = {}  # first version read from the engine
        self.committed_values: dict[Key, bytes | None] = {}
        self.pending: dict[Key, bytes | None] = {}
        self.generation: dict[Key, int] = {}
        self.appends: list[tuple[str, str | None, bytes]] = []
        self.inbox: list[tuple[str, str]] = []
        self.offsets: list[OffsetCommit] = []
        self.timers: list[Timer] = []
        self.cancel_timers: list[tuple[str, str]] = []
        self.fired: list[Timer] = []
        # Event sequences appended to in this batch: (ns, id) -> (expected, events), merged.
        self.events: dict[Key, tuple[int, list[bytes]]] = {}

    async def read(self, key: Key) -> tuple[bytes | None, int]:
        """The value a new read sees, and the key's in-batch generation."""
        if key in self.pending:
            return self.pending[key], self.generation[key]
        if key not in self.committed_values:
            found = await self.engine.kv_get(key[0], [key[1]])
            if key not in self.committed_values:  # another attempt may have read it meanwhile
                hit = found.get(key[1])
                self.committed_values[key] = hit[0] if hit else None
                self.versions[key] = hit[1] if hit else 0
        if key in self.pending:  # written by another attempt while we awaited
            return self.pending[key], self.generation[key]
        return self.committed_values[key], 0

    def unit(self) -> UnitOfWork:
        new = _tuple_new  # KVRead(...) without the named tuple's Python-level __new__
        return UnitOfWork(
            reads=[new(KVRead, (ns, key, v)) for (ns, key), v in self.versions.items()],
            writes=[new(KVWrite, (ns, key, value)) for (ns, key), value in self.pending.items()],
            appends=self.appends,
            offsets=self.offsets,
            inbox=self.inbox,
            timers=self.timers,
            cancel_timers=self.cancel_timers,
            fired=self.fired,
            events=[EventAppend(ns, id_, expected, tuple(values))
                    for (ns, id_), (expected, values) in self.events.items()],
        )


class Attempt:
    """One attempt of one delivery: its reads, writes and emitted records."""

    __slots__ = ("_batch", "appends", "cancel_timers", "events", "reads", "timers", "writes")

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self.reads: dict[Key, int] = {}
        self.writes: dict[Key, bytes | None] = {}
        self.appends: list[tuple[str, str | None, bytes]] = []
        self.timers: list[Timer] = []  # durable timers to set (workflows)
        self.cancel_timers: list[tuple[str, str]] = []
        self.events: list[EventAppend] = []  # event-sequence appends (event sourcing)

    async def get(self, key: Key) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        batch = self._batch
        # What Batch.read answers without the engine, without its await: pending, then committed.
        if key in batch.pending:
            value, generation = batch.pending[key], batch.generation[key]
        elif key in batch.committed_values:
            value, generation = batch.committed_values[key], 0
        else:
            value, generation = await batch.read(key)
        self.reads.setdefault(key, generation)
        return value

    def put(self, key: Key, value: bytes | None) -> None:
        self.writes[key] = value

    def emit(self, stream: str, key: str | None, value: bytes) -> None:
        self.appends.append((stream, key, value))

    def append_events(self, append: EventAppend) -> None:
        """Append to an event sequence if its version is still ``append.expected`` (checked
        against the batch when the attempt merges, and by the engine when the batch commits)."""
        self.events.append(append)

    def pending_events(self, namespace: str, id: str) -> tuple[int, list[bytes]] | None:
        """Events appended to ``(namespace, id)`` in this batch and this attempt, not yet
        committed: (the version they follow, the events), or None."""
        key = (namespace, id)
        found = self._batch.events.get(key)
        expected, values = (found[0], list(found[1])) if found is not None else (-1, [])
        for append in self.events:
            if (append.namespace, append.id) == key:
                if expected < 0:
                    expected = append.expected
                values.extend(append.events)
        return None if expected < 0 else (expected, values)

    def merge(self, inbox: tuple[str, str] | None) -> bool:
        """Fold this attempt into the batch; False if another attempt changed what it read."""
        batch = self._batch
        generation = batch.generation
        for key, seen in self.reads.items():
            if generation.get(key, 0) != seen:
                return False
        if self.events and not self._merge_events():
            return False
        for key, value in self.writes.items():
            batch.pending[key] = value
            generation[key] = generation.get(key, 0) + 1
        batch.appends.extend(self.appends)
        if self.cancel_timers:  # a unit cancels before it sets: drop earlier sets in the batch
            gone = set(self.cancel_timers)
            batch.timers[:] = [t for t in batch.timers if (t.namespace, t.id) not in gone]
            batch.cancel_timers.extend(self.cancel_timers)
        if self.timers:
            batch.timers.extend(self.timers)
        if inbox is not None:
            batch.inbox.append(inbox)
        return True

    def _merge_events(self) -> bool:
        """Fold the event appends into the batch's, if each follows what the batch holds."""
        pending = self._batch.events
        heads = {key: expected + len(values) for key, (expected, values) in pending.items()}
        for append in self.events:
            key = (append.namespace, append.id)
            head = heads.get(key)
            if head is not None and head != append.expected:
                return False
            heads[key] = append.expected + len(append.events)
        for append in self.events:
            key = (append.namespace, append.id)
            found = pending.get(key)
            if found is None:
                pending[key] = (append.expected, list(append.events))
            else:
                found[1].extend(append.events)
        return True
