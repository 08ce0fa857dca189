"""The event-sourcing half of the runtime handle: ``rt.aggregate(name, id)`` (execute, load,
events), ``rt.execute_many`` (many commands in one transaction) and ``rt.replay_aggregate``
(every stored event of an aggregate type sent again through the bus's rules, to rebuild a
projection)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from setpiece.engine.contract import UnitOfWork
from setpiece.runtime.consumer import REPLAY_MARK, RULE_MARK
from setpiece.sourcing._commands import AggregateHandle, execute_many, kind_named
from setpiece.sourcing._extension import EXTENSION

if TYPE_CHECKING:
    from setpiece.engine.contract import Engine
    from setpiece.sourcing._kind import AggregateKind

__all__ = ["SourcingMethods"]

_PAGE = 1000


class SourcingMethods:
    """Aggregates on a runtime (mixed into :class:`~setpiece.Runtime`)."""

    engine: Engine

    # the runtime's, which these methods are mixed into
    extension: Callable[[str], Any]
    has_extension: Callable[[str], bool]
    notify_progress: Callable[[], None]

    def _kind(self, name: str) -> AggregateKind:
        kinds = self.extension(EXTENSION).kinds if self.has_extension(EXTENSION) else {}
        return kind_named(kinds, name)

    def aggregate(self, name: str, id: str) -> AggregateHandle:
        """The aggregate ``name`` with id ``id``: ``await .execute(command)`` (returns the new
        version), ``await .load()`` (returns ``(state, version)``), ``await .events()``.

        Raises ConfigError for an aggregate the stack does not declare, ValueError for an id no
        engine can hold (not a string, U+0000, a lone surrogate).
        """
        return AggregateHandle(self._kind(name), id, self.engine, self.notify_progress)

    async def execute_many(self, name: str, commands: Iterable[tuple[str, Any]]) -> list[int]:
        """Run ``(id, command)`` pairs on aggregates of type ``name`` in one transaction, in
        order; returns the version after each. All or nothing: if one ``decide`` raises,
        nothing is written. A conflict runs the whole batch again from fresh state."""
        return await execute_many(self._kind(name), self.engine, commands, self.notify_progress)

    async def replay_aggregate(
        self, name: str, *, rule: str | None = None, replay: str | None = None
    ) -> int:
        """Send every stored event of aggregate type ``name`` (upcast, in version order per
        aggregate) through its bus's rules again: rebuild a projection from the event store.

        With ``rule`` (a rule, or ``service.handler``), only it receives them. The events keep
        their ids and are deduplicated per ``replay`` name (one is made up when None), so
        handlers see them once more. Returns how many events were sent.
        """
        kind = self._kind(name)
        mark = replay or f"aggregate-{name}-{id(kind):x}-{_now_ms()}"
        sent = 0
        after = ""
        while True:
            sequences = await self.engine.event_sequences(kind.events_ns, after, _PAGE)
            if not sequences:
                return sent
            records: list[tuple[str, str | None, bytes]] = []
            for aggregate_id, _ in sequences:
                for _, raw in await self.engine.read_events(kind.events_ns, aggregate_id):
                    event = kind.read(raw)
                    extensions = dict(event.extensions or {})
                    extensions[REPLAY_MARK] = mark
                    if rule is not None:
                        extensions[RULE_MARK] = rule
                    again = event.replace(extensions=extensions)
                    records.append((kind.stream, again.partitionkey, _encode(again)))
            for start in range(0, len(records), _PAGE):
                await self.engine.commit(UnitOfWork(appends=records[start : start + _PAGE]))
            sent += len(records)
            self.notify_progress()
            after = sequences[-1][0]


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _encode(event: Any) -> bytes:
    from setpiece.event import encode_event

    return encode_event(event)
