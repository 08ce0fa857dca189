"""What a handler gets besides its event: its service's store, a way to publish, and facts
about the delivery. Everything done through a context commits with the delivery or not at all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

from setpiece.errors import ConfigError, TaskDoesNotExist
from setpiece.event import Event

if TYPE_CHECKING:
    from setpiece.runtime.scope import Scope
    from setpiece.runtime.unit import Attempt

__all__ = [
    "AGGREGATES", "TASK_TOKENS", "AggregateCommands", "Context", "ServiceStore",
    "SyncAggregateCommands", "SyncContext", "SyncServiceStore", "TaskAnswers",
]

#: The context service that answers workflow task tokens (provided by durable workflows).
TASK_TOKENS = "task_tokens"
#: The context service that reads the stack's views (provided by setpiece.views).
VIEWS = "views"
#: The context service behind ``ctx.aggregate`` (provided by event sourcing).
AGGREGATES = "aggregates"


class AggregateCommands(Protocol):
    """One event-sourced aggregate seen from a delivery: its commands commit with it."""

    async def execute(self, command: Any) -> int: ...
    async def load(self) -> tuple[Any, int]: ...


class TaskAnswers(Protocol):
    """Answers to workflow tasks that wait for a token, committed with the delivery."""

    async def success(self, token: str, output: Any) -> None: ...
    async def failure(self, token: str, error: str | None, cause: str | None) -> None: ...
    async def heartbeat(self, token: str) -> None: ...

T = TypeVar("T")
_encode = msgspec.json.encode
_decode = msgspec.json.decode


@functools.lru_cache(maxsize=1024)
def _logger(service: str) -> logging.Logger:
    return logging.getLogger(f"setpiece.service.{service}")


def store_namespace(service: str, tenant: str | None = None) -> str:
    """The engine namespace that holds a service's store (one per tenant when tenants are used)."""
    return f"svc:{service}" if tenant is None else f"svc:{service}@{tenant}"


class StoreKeyError(ValueError):
    """A store key no engine can hold (not a string, U+0000, a lone surrogate). In an HTTP
    route it is the request's fault (the key came from it): the gateway answers 400."""


def check_key(key: Any) -> str:
    """A store key every engine can hold: a string without U+0000, encodable as UTF-8.

    Raises StoreKeyError (a ValueError) naming the key (PostgreSQL text cannot hold NUL; a lone
    surrogate has no UTF-8 form).
    """
    if type(key) is not str and not isinstance(key, str):
        raise StoreKeyError(f"store key: must be a string, got {type(key).__name__}")
    if "\0" in key:
        raise StoreKeyError(f"store key {key!r}: must not contain U+0000 (NUL)")
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise StoreKeyError(
                f"store key {key!r}: not valid Unicode text (a lone surrogate)"
            ) from None
    return key


class ServiceStore:
    """A service's own key-value store, seen from inside one delivery. Values are JSON data.

    Keys are strings without U+0000 (ValueError otherwise).
    """

    __slots__ = ("_attempt", "namespace")

    def __init__(self, attempt: Attempt, namespace: str) -> None:
        self._attempt = attempt
        self.namespace = namespace

    async def get(self, key: str, default: Any = None) -> Any:
        if type(key) is not str or not key.isascii() or "\0" in key:  # the fast path inline
            check_key(key)
        raw = await self._attempt.get((self.namespace, key))
        return default if raw is None else _decode(raw)

    async def put(self, key: str, value: Any) -> None:
        if type(key) is not str or not key.isascii() or "\0" in key:  # the fast path inline
            check_key(key)
        self._attempt.put((self.namespace, key), _encode(value))

    async def delete(self, key: str) -> None:
        if type(key) is not str or not key.isascii() or "\0" in key:  # the fast path inline
            check_key(key)
        self._attempt.put((self.namespace, key), None)


class Context:
    """The context of one delivery attempt (made by its :class:`~setpiece.runtime.scope.Scope`)."""

    __slots__ = ("_scope", "attempt", "event", "handler", "log", "service", "store")

    def __init__(self, scope: Scope, handler: str) -> None:
        self._scope = scope
        self.service = scope.service
        self.handler = handler
        self.event = scope.cause
        self.attempt = scope.number
        self.store = scope.store
        self.log = _logger(scope.service)

    def _token_api(self) -> TaskAnswers:
        answers: TaskAnswers | None = self._scope.service_named(TASK_TOKENS)
        if answers is None:
            raise TaskDoesNotExist("this runtime runs no workflows, so no task waits for a token")
        return answers

    def aggregate(self, name: str, id: str) -> AggregateCommands:
        """The event-sourced aggregate ``name`` with id ``id``, as this delivery sees it.

        ``await ctx.aggregate("account", "a-1").execute(command)`` decides the command on the
        current state and returns the new version; the events are stored, and published, with
        this delivery (its store writes, events and offset), or not at all. When another writer
        got there first, the delivery runs again on fresh state. ``await .load()`` returns
        ``(state, version)``. Raises ConfigError for an aggregate the stack does not declare.
        """
        found = self._scope.service_named(AGGREGATES)
        if found is None:
            raise ConfigError(
                f"aggregate {name!r}: this stack declares no aggregates "
                "(Stack(..., aggregates=[...]))"
            )
        commands: AggregateCommands = found.handle(
            name, id, cause=self.event, service=self.service
        )
        return commands

    async def send_task_success(self, token: str, output: Any = None) -> None:
        """Answer a workflow task waiting for ``token`` with ``output`` (a JSON value).

        The answer commits with this delivery (its store writes and events) or not at all.
        Raises :class:`~setpiece.errors.InvalidToken`, :class:`~setpiece.errors.TaskDoesNotExist`
        or :class:`~setpiece.errors.TaskTimedOut` (answered already, timed out, execution over).
        """
        await self._token_api().success(token, output)

    async def send_task_failure(
        self, token: str, error: str | None = None, cause: str | None = None
    ) -> None:
        """Fail a workflow task waiting for ``token`` with an ASL ``error`` name and ``cause``."""
        await self._token_api().failure(token, error, cause)

    async def send_task_heartbeat(self, token: str) -> None:
        """Tell a task with ``HeartbeatSeconds`` that the work for ``token`` is still going on."""
        await self._token_api().heartbeat(token)

    def view(self, name: str) -> Any:
        """Read the stack's view ``name`` (its committed state: ``get``, ``items``, ``range``,
        ``windows``), the rows of this event's tenant; ConfigError when the stack declares no
        view of that name."""
        views = self._scope.service_named(VIEWS)
        if views is None:
            raise ConfigError(f"the stack has no view {name!r} (it declares no views)")
        return views.reader(name, self.event.tenant)

    async def publish(
        self, event: Event, *, bus: str | None = None, stream: str | None = None
    ) -> None:
        """Emit an event (onto the stack's default bus unless ``bus`` or ``stream`` is named).

        It is appended only if this delivery commits. Causation, correlation, trace, partition
        key and tenant are carried over from the event being handled unless set.
        """
        self._scope.publish(event, bus, stream)

    def sync(self) -> SyncContext:
        return SyncContext(self, asyncio.get_running_loop())


class SyncServiceStore:
    """The store for plain ``def`` handlers, which run in a worker thread."""

    __slots__ = ("_loop", "_store")

    def __init__(self, store: ServiceStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get(self, key: str, default: Any = None) -> Any:
        return self._run(self._store.get(key, default))

    def put(self, key: str, value: Any) -> None:
        self._run(self._store.put(key, value))

    def delete(self, key: str) -> None:
        self._run(self._store.delete(key))


class SyncAggregateCommands:
    """An aggregate for plain ``def`` handlers: ``execute`` and ``load`` block."""

    __slots__ = ("_commands", "_loop")

    def __init__(self, commands: AggregateCommands, loop: asyncio.AbstractEventLoop) -> None:
        self._commands = commands
        self._loop = loop

    def execute(self, command: Any) -> int:
        return asyncio.run_coroutine_threadsafe(
            self._commands.execute(command), self._loop).result()

    def load(self) -> tuple[Any, int]:
        return asyncio.run_coroutine_threadsafe(self._commands.load(), self._loop).result()


class SyncContext:
    """The context for plain ``def`` handlers: the same, with blocking methods."""

    __slots__ = ("_ctx", "_loop", "attempt", "event", "handler", "log", "service", "store")

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self.service = ctx.service
        self.handler = ctx.handler
        self.event = ctx.event
        self.attempt = ctx.attempt
        self.log = ctx.log
        self.store = SyncServiceStore(ctx.store, loop)

    def publish(self, event: Event, *, bus: str | None = None, stream: str | None = None) -> None:
        self._ctx._scope.publish(event, bus, stream)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def aggregate(self, name: str, id: str) -> SyncAggregateCommands:
        """See :meth:`Context.aggregate` (blocking methods)."""
        return SyncAggregateCommands(self._ctx.aggregate(name, id), self._loop)

    def send_task_success(self, token: str, output: Any = None) -> None:
        """See :meth:`Context.send_task_success`."""
        self._run(self._ctx.send_task_success(token, output))

    def send_task_failure(
        self, token: str, error: str | None = None, cause: str | None = None
    ) -> None:
        """See :meth:`Context.send_task_failure`."""
        self._run(self._ctx.send_task_failure(token, error, cause))

    def send_task_heartbeat(self, token: str) -> None:
        """See :meth:`Context.send_task_heartbeat`."""
        self._run(self._ctx.send_task_heartbeat(token))
