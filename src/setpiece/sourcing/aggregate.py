"""The declaration of an event-sourced aggregate: plain data, importing nothing above the pure
layer (the stack holds it; :mod:`setpiece.sourcing` runs it).

An aggregate's state is its events: ``initial()`` is the state before any, ``evolve(state,
event)`` the state after one, and ``decide(state, command)`` turns a command into new events
(or raises to refuse it). Its options are small frozen dataclasses: :class:`Snapshots` (every N
events, rebuilt when the state's code changes), :class:`Upcaster` (an old event version turned
into the current one on read) and a :class:`~setpiece.policy.RetryPolicy` for conflicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from setpiece.errors import ConfigError
from setpiece.event import Event
from setpiece.policy import RetryPolicy
from setpiece.stream import check_name

__all__ = ["CONFLICT_RETRY", "Aggregate", "Snapshots", "Upcaster"]

#: The default conflict policy: up to 20 attempts, 1 ms doubling to 50 ms, full jitter.
CONFLICT_RETRY = RetryPolicy(max_attempts=20, initial_delay=0.001, max_delay=0.05, jitter=1.0)

#: ``decide``'s answer: one event, several, or None (nothing happened).
Decision = Event | Iterable[Event] | None
Evolve = Callable[[Any, Event], Any]


@dataclass(frozen=True, slots=True)
class Snapshots:
    """Keep the state every ``every`` events, so a load folds at most ``every - 1`` events.

    ``version`` names the state's code: a snapshot taken under another version is ignored (the
    state is folded from the events again) and replaced. None (the default) derives it from the
    code of ``initial`` and ``evolve`` (their bytecode and constants), so changing either
    rebuilds the snapshots; give a string to decide yourself. The state must be JSON data.
    ``every=0`` turns snapshots off.
    """

    every: int = 100
    version: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
            raise ConfigError(f"Snapshots.every: must be an int >= 0, got {self.every!r}")
        if self.version is not None and not isinstance(self.version, str):
            raise ConfigError(f"Snapshots.version: must be a string, got {self.version!r}")


@dataclass(frozen=True, slots=True)
class Upcaster:
    """On read, turn a stored event of ``type`` with ``dataversion`` ``version`` (None: events
    without one) into its current form with ``upcast(event) -> event``.

    The result must have another type or dataversion (upcasters chain: 1 -> 2 -> 3); an
    upcaster that raises fails the load or command with an EventError naming it, and nothing
    is written.
    """

    type: str
    version: str | None
    upcast: Callable[[Event], Event]


class Aggregate:
    """An event-sourced aggregate type.

    ``evolve`` is a function ``(state, event) -> state``, or a mapping of event type to such a
    function (an event type it lacks is an error naming it). ``bus`` (the stack's default bus
    unless named) is where the aggregate's events are published, with ``subject`` = the
    aggregate id, in the transaction that stores them.

    ``cache``: commands from outside a delivery (``rt.aggregate(...).execute``,
    ``rt.execute_many``) keep the state of up to this many aggregates in memory after their
    commit, and start the next command from it instead of the store; a stale entry (another
    writer appended meanwhile) is caught by the expected version, and the command reruns on
    fresh state. 0 turns it off. ``decide`` must not change the state it is given.
    """

    def __init__(
        self,
        name: str,
        *,
        initial: Callable[[], Any],
        decide: Callable[[Any, Any], Decision],
        evolve: Evolve | Mapping[str, Evolve],
        snapshots: Snapshots | None = Snapshots(),
        upcasters: Sequence[Upcaster] = (),
        retry: RetryPolicy = CONFLICT_RETRY,
        bus: str | None = None,
        cache: int = 10_000,
    ) -> None:
        check_name("aggregate", name)
        for field, value in (("initial", initial), ("decide", decide)):
            if not callable(value):
                raise ConfigError(f"aggregate {name!r}: {field} must be callable")
        if isinstance(evolve, Mapping):
            for event_type, fn in evolve.items():
                if not callable(fn):
                    raise ConfigError(f"aggregate {name!r}: evolve[{event_type!r}] is not callable")
        elif not callable(evolve):
            raise ConfigError(f"aggregate {name!r}: evolve must be callable or a mapping")
        if snapshots is not None and not isinstance(snapshots, Snapshots):
            raise ConfigError(f"aggregate {name!r}: snapshots must be a Snapshots or None")
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
            raise ConfigError(f"aggregate {name!r}: cache must be an int >= 0, got {cache!r}")
        if not isinstance(retry, RetryPolicy):
            raise ConfigError(f"aggregate {name!r}: retry must be a RetryPolicy")
        self.name = name
        self.initial = initial
        self.decide = decide
        self.evolve = evolve
        self.snapshots = snapshots if snapshots is not None and snapshots.every else None
        self.retry = retry
        self.bus = bus
        self.cache = cache
        self.upcasters: dict[tuple[str, str | None], Upcaster] = {}
        for upcaster in upcasters:
            if not isinstance(upcaster, Upcaster) or not callable(upcaster.upcast):
                raise ConfigError(f"aggregate {name!r}: upcasters must be Upcaster(...) values")
            key = (upcaster.type, upcaster.version)
            if key in self.upcasters:
                raise ConfigError(
                    f"aggregate {name!r}: two upcasters of {upcaster.type!r} version "
                    f"{upcaster.version!r}"
                )
            self.upcasters[key] = upcaster
        self.state_version = self._state_version()

    def _state_version(self) -> str:
        """The snapshots' version: the declared one, or a digest of the state's code."""
        if self.snapshots is not None and self.snapshots.version is not None:
            return self.snapshots.version
        digest = hashlib.blake2b(digest_size=8)
        fns: list[Any] = [self.initial]
        if isinstance(self.evolve, Mapping):
            for event_type in sorted(self.evolve):
                digest.update(event_type.encode())
                fns.append(self.evolve[event_type])
        else:
            fns.append(self.evolve)
        for fn in fns:
            _digest_code(digest, getattr(fn, "__code__", None) or type(fn).__qualname__)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"Aggregate({self.name!r})"


def _digest_code(digest: Any, code: object) -> None:
    if isinstance(code, CodeType):
        digest.update(code.co_code)
        digest.update(repr(code.co_names).encode())
        for const in code.co_consts:
            _digest_code(digest, const)
    else:
        digest.update(repr(code).encode())
