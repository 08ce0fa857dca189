"""One delivery's unit of work, whatever kind of handler takes it.

An event handler, a stream consumer, a schedule, an HTTP route and a workflow task each run in a
:class:`Scope`: the store of their service *for the tenant of the event that caused them*, the
events they emit (which inherit that event's trace, tenant, correlation and partition key), and
the context services that parts above the runtime contribute (task tokens, ...). Everything done
through a scope lands in its :class:`~setpiece.runtime.unit.Attempt` and commits with the
delivery or not at all: whoever runs the delivery commits it.

:func:`call_handler` is the one place that runs user code: ``async def`` on the loop, plain
``def`` in a worker thread with the blocking form of its context (:func:`invoke_handler` for a
declared handler, whose input is decoded first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from setpiece.context import Context, ServiceStore, store_namespace
from setpiece.event import Event
from setpiece.runtime.unit import Attempt
from setpiece.service import Handler

__all__ = ["ContextService", "Emit", "Scope", "call_handler", "invoke_handler"]

#: Makes a context service (task tokens, ...) for one attempt; see ``Runtime.add_context_service``.
ContextService = Callable[[Attempt], Any]


class Emit(Protocol):
    def __call__(
        self, attempt: Attempt, event: Event, bus: str | None, stream: str | None, *,
        cause: Event, service: str,
    ) -> None: ...


class Scope:
    """The unit of work of one delivery attempt of ``cause`` to a handler of ``service``.

    ``store``: the store its handler sees (default: the service's, for the cause's tenant; a
    shadow version gets its own, see :mod:`setpiece.runtime.rollouts`)."""

    __slots__ = ("_emit", "_made", "_services", "attempt", "cause", "number", "service", "store")

    def __init__(
        self,
        attempt: Attempt,
        *,
        service: str,
        cause: Event,
        number: int,
        emit: Emit,
        services: Mapping[str, ContextService],
        store: ServiceStore | None = None,
    ) -> None:
        self.attempt = attempt
        self.service = service
        self.cause = cause
        self.number = number
        self.store = (ServiceStore(attempt, store_namespace(service, cause.tenant))
                      if store is None else store)
        self._emit = emit
        self._services = services
        self._made: dict[str, Any] | None = None

    def publish(self, event: Event, bus: str | None = None, stream: str | None = None) -> None:
        """Emit ``event`` with the delivery (onto the default bus unless a bus or stream is
        named); it inherits the cause's trace, tenant, correlation and partition key."""
        self._emit(self.attempt, event, bus, stream, cause=self.cause, service=self.service)

    def service_named(self, name: str) -> Any:
        """The context service ``name`` for this attempt (None when no part provides it)."""
        made = self._made
        if made is None:
            made = self._made = {}
        elif name in made:
            return made[name]
        factory = self._services.get(name)
        made[name] = found = None if factory is None else factory(self.attempt)
        return found

    def context(self, handler: str) -> Context:
        """The ``ctx`` a handler named ``handler`` receives."""
        return Context(self, handler)


async def call_handler(fn: Callable[..., Any], is_async: bool, *args: Any, **kwargs: Any) -> Any:
    """Run a handler: awaited if ``async def``; else in a worker thread, where every
    :class:`~setpiece.Context` among its arguments is replaced by its blocking form."""
    if is_async:
        return await fn(*args, **kwargs)
    args = tuple(a.sync() if isinstance(a, Context) else a for a in args)
    kwargs = {k: v.sync() if isinstance(v, Context) else v for k, v in kwargs.items()}
    return await asyncio.to_thread(fn, *args, **kwargs)


async def invoke_handler(handler: Handler, event: Event, ctx: Context) -> Any:
    """Run a declared handler on ``event``: its input decoded as its annotation asks, ``ctx``
    passed if it takes one (a schedule may take ``ctx`` alone)."""
    arg = handler.adapt(event)
    args: tuple[Any, ...]
    if handler.kind == "schedule" and arg is None:
        args = (ctx,) if handler.wants_ctx else ()
    else:
        args = (arg, ctx) if handler.wants_ctx else (arg,)
    return await call_handler(handler.fn, handler.is_async, *args)
