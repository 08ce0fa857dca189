"""The engine contract: a short ladder of small interfaces, each rung adding one guarantee.

::

    Log                  append-only partitioned streams: append in batches, read from an offset
     └── GroupLog        consumer groups: live members, partition assignment, committed offsets
          └── Store      a transactional key-value store; one UnitOfWork commits state, inbox,
               │         outbox appends, offsets, timers and event-sequence appends
               │         (event sourcing: append with an expected version) together, or nothing
               └── Engine   durable timers, and the lifecycle (open / close)

Every engine (embedded SQLite, NATS JetStream + PostgreSQL) implements :class:`Engine` and passes
the conformance suite in :mod:`setpiece.engine.conformance`.

Two rules hold on every rung:

* Offsets are dense integers per partition, starting at 0. ``end_offsets`` is the offset the next
  append will get.
* A :class:`UnitOfWork` is all or nothing. Offsets commit by compare-and-set (``from_offset`` must
  equal the committed offset), key-value writes check the versions their reads saw, fired timers
  must still be due, and inbox ids must be new: any lost race raises
  :class:`~setpiece.errors.ConflictError` and commits nothing. That is what turns at-least-once
  delivery into exactly-once effects, even while two members briefly own one partition.
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Assignment",
    "Engine",
    "EventAppend",
    "GroupLog",
    "KVRead",
    "KVWrite",
    "Log",
    "OffsetCommit",
    "Record",
    "Store",
    "StreamSpec",
    "Timer",
    "UnitOfWork",
    "partition_for",
]


def partition_for(key: str | None, partitions: int, fallback: int = 0) -> int:
    """The partition a record's key picks: a stable hash (CRC-32), the same on every engine."""
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream's declaration. ``retention`` in seconds; None keeps records until trimmed."""

    name: str
    partitions: int = 1
    retention: float | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a stream, as read back."""

    stream: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp: float


@dataclass(frozen=True, slots=True)
class Assignment:
    """The partitions one member of a group owns now, and the group's live members."""

    partitions: tuple[int, ...]
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """Move a group's committed offset on one partition from ``from_offset`` to ``to_offset``."""

    group: str
    stream: str
    partition: int
    from_offset: int
    to_offset: int


class KVRead(NamedTuple):
    """A key read inside a unit of work, with the version seen (0: the key was absent)."""

    namespace: str
    key: str
    version: int


class KVWrite(NamedTuple):
    """Set a key (``value``) or delete it (``value is None``).

    (KVRead and KVWrite are named tuples: a batch builds hundreds of them per commit.)
    """

    namespace: str
    key: str
    value: bytes | None


class EventAppend(NamedTuple):
    """Append ``events`` to the event sequence ``(namespace, id)`` if its version is still
    ``expected`` (event sourcing: optimistic concurrency).

    A sequence's version is the number of events it holds (0: none yet); the first event
    appended gets version ``expected + 1``. If another writer appended first (the version is no
    longer ``expected``), the whole unit of work raises ConflictError and commits nothing.
    """

    namespace: str
    id: str
    expected: int
    events: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: due at ``due`` (seconds since the epoch), carrying ``payload``."""

    namespace: str
    id: str
    due: float
    payload: bytes = b""


@dataclass(slots=True)
class UnitOfWork:
    """Everything one delivery (or one batch of deliveries) changes, committed atomically.

    ``appends`` are the outbox: (stream, key, value) records that appear in the log if and only
    if the unit commits. ``inbox`` holds (consumer, event id) pairs that must not have been
    recorded before. ``fired`` are timers that must still exist with the same due time, and are
    removed. ``events`` append to event sequences with an expected version (see
    :class:`EventAppend`); several appends to one sequence in a unit apply in list order.

    ``writes`` apply in list order, so the last write of a key wins. Every write of a key gives
    it a new version (never 0, never one the key had before, even after a delete). ``timers``
    are scheduled (upserted by namespace and id) after ``cancel_timers`` and ``fired`` are
    removed, so a unit can fire a timer and re-arm the same id. Naming a stream or partition
    that does not exist (in ``appends`` or ``offsets``) raises ConfigError and commits nothing.
    """

    reads: list[KVRead] = field(default_factory=list)
    writes: list[KVWrite] = field(default_factory=list)
    appends: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    offsets: list[OffsetCommit] = field(default_factory=list)
    inbox: list[tuple[str, str]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    cancel_timers: list[tuple[str, str]] = field(default_factory=list)
    fired: list[Timer] = field(default_factory=list)
    events: list[EventAppend] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.events
            or self.writes
            or self.appends
            or self.offsets
            or self.inbox
            or self.timers
            or self.cancel_timers
            or self.fired
        )


class Log(abc.ABC):
    """Rung 1: named, partitioned, append-only, ordered logs."""

    @abc.abstractmethod
    async def create_stream(self, spec: StreamSpec) -> None:
        """Create a stream, or check an existing one.

        Raises ConfigError if partitions differ from the existing stream's, or are below 1.
        """

    @abc.abstractmethod
    async def streams(self) -> list[StreamSpec]:
        """Every stream the engine holds."""

    @abc.abstractmethod
    async def drop_stream(self, name: str) -> None:
        """Delete a stream with its records, its groups' committed offsets and members.

        A stream that does not exist (or exists only in part, after a creation that failed
        midway) is removed as far as it exists; deleting a missing stream is harmless. For
        ``setpiece apply`` (deletions and the undoing of a failed apply).
        """

    @abc.abstractmethod
    async def append(
        self, stream: str, records: Sequence[tuple[str | None, bytes]]
    ) -> list[tuple[int, int]]:
        """Append (key, value) records in one batch; returns (partition, offset) for each.

        A record's key picks its partition (:func:`partition_for`); keyless records are spread
        round-robin. Order is kept per partition.
        """

    @abc.abstractmethod
    async def read(self, stream: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Up to ``limit`` records of one partition, from ``offset`` on, in order.

        An offset below the start offset reads from the start; at or past the end, nothing.
        A partition the stream lacks raises ConfigError.
        """

    @abc.abstractmethod
    async def end_offsets(self, stream: str) -> list[int]:
        """Per partition, the offset the next appended record will get.

        Every committed record counts, one a read cannot return yet too (an engine that relays
        commits to its log, when the relaying process died or the log was unreachable): a
        consumer's lag, and so a drain, waits for it.
        """

    @abc.abstractmethod
    async def start_offsets(self, stream: str) -> list[int]:
        """Per partition, the first offset still held (retention trims from the start)."""

    @abc.abstractmethod
    async def offsets_for_time(self, stream: str, timestamp: float) -> list[int]:
        """Per partition, the first offset whose record was appended at or after ``timestamp``."""

    @abc.abstractmethod
    async def trim(self, stream: str, before: float) -> int:
        """Drop records appended before ``before``; returns how many were dropped."""

    @abc.abstractmethod
    async def wait(self, streams: Sequence[str], timeout: float) -> None:
        """Return when any of ``streams`` may have new records, or after ``timeout`` seconds.

        Never a busy poll: in-process appends wake waiters at once; appends by other processes
        are noticed within a short, bounded delay.
        """


class GroupLog(Log):
    """Rung 2: consumer groups with live members, assignment and committed offsets."""

    @abc.abstractmethod
    async def heartbeat(
        self, group: str, stream: str, member: str, *, session_timeout: float
    ) -> Assignment:
        """Join or stay in a group; returns the partitions this member owns now.

        Members that have not sent a heartbeat within ``session_timeout`` are gone. Partitions
        are assigned from the sorted list of live members, the same in every process.
        """

    @abc.abstractmethod
    async def leave(self, group: str, stream: str, member: str) -> None:
        """Leave a group at once, so its partitions move without waiting for the timeout."""

    @abc.abstractmethod
    async def committed(self, group: str, stream: str) -> dict[int, int]:
        """The committed offset of every partition (0 where nothing was committed)."""

    @abc.abstractmethod
    async def groups(self) -> list[tuple[str, str]]:
        """Every (group, stream) pair that has committed offsets or members."""

    @abc.abstractmethod
    async def drop_group(self, group: str, stream: str) -> None:
        """Forget a group's committed offsets and members on a stream (missing: harmless)."""


class Store(GroupLog):
    """Rung 3: the transactional store. One :class:`UnitOfWork` commits all or nothing."""

    @abc.abstractmethod
    async def kv_get(self, namespace: str, keys: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        """The present keys among ``keys`` with their (value, version)."""

    @abc.abstractmethod
    async def kv_scan(
        self, namespace: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        """Keys (and values) of a namespace that start with ``prefix``, in key order.

        Key order is Python's ``str`` order (by code point), whatever a database's collation;
        the prefix is literal (no wildcards).
        """

    @abc.abstractmethod
    async def inbox_seen(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the consumer has already recorded as processed."""

    @abc.abstractmethod
    async def commit(self, work: UnitOfWork) -> list[tuple[str, int, int]]:
        """Commit a unit of work atomically, or raise ConflictError and change nothing.

        Returns (stream, partition, offset) for each of ``work.appends``, in order, once those
        records are readable from the log.
        """

    @abc.abstractmethod
    async def prune_inbox(self, before: float) -> int:
        """Forget inbox entries recorded before ``before``; returns how many."""

    @abc.abstractmethod
    async def read_events(
        self, namespace: str, id: str, after: int = 0, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """The events of sequence ``(namespace, id)`` with a version above ``after``, as
        (version, value) in version order, at most ``limit`` of them (all without one).

        Versions are dense from 1 (:class:`EventAppend`); an unknown sequence has none.
        """

    @abc.abstractmethod
    async def event_sequences(
        self, namespace: str, after: str = "", limit: int = 1000
    ) -> list[tuple[str, int]]:
        """The sequences of ``namespace`` whose id sorts after ``after`` (Python ``str``
        order), as (id, version), at most ``limit``: page through them to replay every one."""


class Engine(Store):
    """Rung 4: durable timers, and the lifecycle."""

    url: str

    @abc.abstractmethod
    async def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        """Timers due at or before ``now``, earliest first. Fire them with UnitOfWork.fired."""

    @abc.abstractmethod
    async def next_timer(self) -> float | None:
        """When the earliest timer is due, or None."""

    @abc.abstractmethod
    async def timers(self, namespace: str) -> list[Timer]:
        """All timers of a namespace, earliest first."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; pending :meth:`wait` calls return.

        The engine cannot be used afterwards: every call raises EngineError. Closing twice is
        harmless.
        """
