"""Services: bounded contexts made of small handlers, data in and data out.

::

    svc = Service("loyalty")

    @svc.on({"type": ["product_registered"]})
    async def award(event: Event, ctx: Context) -> Event | None: ...

    @svc.consume("orders")                      # ordered records of a stream
    async def record(order: Order, ctx): ...    # data decoded into a Struct / pydantic model

    @svc.every(60)                              # or @svc.cron("*/5 * * * *")
    def tick(ctx): ...                          # plain def runs in a worker thread

    @svc.task()                                 # called by workflows ("service:loyalty.quote")
    async def quote(event: Event, ctx) -> dict: ...

A handler's first parameter receives the event (annotated ``Event``, unannotated, or a type its
``data`` is decoded into); a second parameter, if any, receives the :class:`~setpiece.Context`.
Its return value (an event, a list of events, or None) is published.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from setpiece.bus import DEFAULT_BUS, compile_pattern
from setpiece.cron import check_cron
from setpiece.errors import ConfigError, InputDecodeError
from setpiece.event import Event
from setpiece.policy import RetryPolicy
from setpiece.route_params import compile_signature
from setpiece.stream import Stream, check_name

if TYPE_CHECKING:
    from setpiece.patterns import InputTransformer, Pattern

__all__ = ["Handler", "HttpRoute", "InputDecodeError", "Service"]

F = TypeVar("F", bound=Callable[..., Any])


def _event_adapter(fn: Callable[..., Any], where: str) -> tuple[Callable[[Event], Any], bool]:
    """How to turn an Event into the handler's first argument; and whether it takes a ctx."""
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) > 2:
        raise ConfigError(f"{where}: a handler takes (event) or (event, ctx), not {len(params)}")
    if not params:
        return (lambda event: None), False
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolvable forward references
        raise ConfigError(f"{where}: cannot resolve the annotations ({exc})") from None
    first = params[0]
    wants_ctx = len(params) == 2
    if len(params) == 1 and (first.name == "ctx" or _is_context(hints.get(first.name))):
        return (lambda event: None), True  # (ctx) alone: schedules
    annotation = hints.get(first.name, inspect.Parameter.empty)
    if annotation in (inspect.Parameter.empty, Event, Any, object):
        return (lambda event: event), wants_ctx
    if annotation is dict or typing.get_origin(annotation) is dict:
        return (lambda event: event.data), wants_ctx
    if _is_pydantic(annotation):
        model: Any = annotation

        def decode_pydantic(event: Event) -> Any:
            try:
                return model.model_validate(event.data)
            except Exception as exc:
                raise InputDecodeError(
                    f"event data does not fit {model.__name__}: {exc}"
                ) from None

        return decode_pydantic, wants_ctx

    def decode(event: Event) -> Any:
        try:
            return msgspec.convert(event.data, annotation)
        except msgspec.ValidationError as exc:
            name = getattr(annotation, "__name__", str(annotation))
            raise InputDecodeError(f"event data does not fit {name}: {exc}") from None

    return decode, wants_ctx


def _is_context(annotation: Any) -> bool:
    return getattr(annotation, "__name__", None) in ("Context", "SyncContext")


def _is_pydantic(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "model_validate")


@dataclass(frozen=True, slots=True)
class Handler:
    """One handler of a service, as declared. The runtime turns it into a consumer."""

    service: str
    name: str
    fn: Callable[..., Any]
    kind: str  # "event" | "stream" | "schedule" | "task"
    retry: RetryPolicy | None = None
    concurrency: int | None = None
    bus: str | None = None
    pattern: Mapping[str, Any] | str | None = None
    transform: InputTransformer | None = None
    stream: str | None = None
    every: float | None = None
    cron: str | None = None
    timeout: float | None = None  # seconds per attempt; None: RuntimeConfig.handler_timeout
    compiled: Pattern | None = field(default=None, repr=False, compare=False)
    adapt: Callable[[Event], Any] = field(default=lambda e: e, repr=False, compare=False)
    wants_ctx: bool = True
    is_async: bool = True

    @property
    def qualname(self) -> str:
        return f"{self.service}.{self.name}"


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """One HTTP route of a service, as declared. The gateway (:mod:`setpiece.gateway`) serves it.

    ``signature`` is how the gateway binds a request to the handler's parameters (path, query,
    body, ctx), checked when the route is declared.
    """

    service: str
    name: str
    method: str
    path: str
    fn: Callable[..., Any]
    scopes: tuple[str, ...] = ()
    public: bool = False
    summary: str | None = None
    signature: Any = field(default=None, repr=False, compare=False)


class Service:
    """A bounded context: event and stream handlers, schedules, HTTP routes, and its own store."""

    def __init__(self, name: str, *, version: str = "1") -> None:
        check_name("service", name)
        self.name = name
        self.version = version
        self.handlers: list[Handler] = []
        self.routes: list[HttpRoute] = []

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={[h.name for h in self.handlers]})"

    def _add(self, fn: Callable[..., Any], kind: str, name: str | None, **spec: Any) -> None:
        if not callable(fn):
            raise ConfigError(f"service {self.name!r}: {fn!r} is not callable")
        handler_name = str(name or getattr(fn, "__name__", ""))
        try:
            check_name("handler", handler_name)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (pass name= to name the handler)") from None
        where = f"handler {self.name}.{handler_name}"
        if any(h.name == handler_name for h in self.handlers):
            raise ConfigError(f"{where}: declared twice (pass name= to tell them apart)")
        adapt, wants_ctx = _event_adapter(fn, where)
        is_async = inspect.iscoroutinefunction(fn)
        if not is_async and inspect.isasyncgenfunction(fn):
            raise ConfigError(f"{where}: async generators are not handlers; return a list")
        concurrency = spec.get("concurrency")
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"{where}: concurrency must be at least 1")
        timeout = spec.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigError(f"{where}: timeout must be positive seconds, got {timeout!r}")
        self.handlers.append(
            Handler(
                self.name,
                handler_name,
                fn,
                kind,
                adapt=adapt,
                wants_ctx=wants_ctx,
                is_async=is_async,
                **spec,
            )
        )

    def on(
        self,
        pattern: Mapping[str, Any] | str,
        *,
        bus: str = DEFAULT_BUS,
        retry: RetryPolicy | None = None,
        concurrency: int | None = None,
        transform: InputTransformer | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Handle the events on ``bus`` that match an EventBridge ``pattern``.

        ``timeout``: seconds one attempt may run (default: ``RuntimeConfig.handler_timeout``);
        past it the attempt fails with HandlerTimeout and is retried, then dead-lettered.
        """

        def register(fn: F) -> F:
            where = f"handler {self.name}.{name or fn.__name__}"
            compiled = compile_pattern(pattern, where)
            self._add(
                fn,
                "event",
                name,
                bus=bus,
                pattern=pattern,
                compiled=compiled,
                transform=transform,
                retry=retry,
                concurrency=concurrency,
                timeout=timeout,
            )
            return fn

        return register

    def consume(
        self,
        stream: str | Stream,
        *,
        retry: RetryPolicy | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Handle every record of a stream, in order per partition key (``timeout``: as in
        :meth:`on`)."""
        stream_name = stream.name if isinstance(stream, Stream) else stream

        def register(fn: F) -> F:
            self._add(
                fn, "stream", name, stream=stream_name, retry=retry, concurrency=concurrency,
                timeout=timeout,
            )
            return fn

        return register

    def task(
        self, *, name: str | None = None, timeout: float | None = None
    ) -> Callable[[F], F]:
        """A handler that workflows call as a Task state (``"Resource": "service:<svc>.<name>"``).

        It subscribes to nothing: it runs when a workflow calls it, gets an event whose ``data``
        is the task input, and returns the task result (a JSON value, or an Event whose ``data``
        is the result). Its store writes and published events commit with the workflow step.
        ``timeout``: as in :meth:`on`; a call past it fails the task with ``States.Timeout``.
        """

        def register(fn: F) -> F:
            self._add(fn, "task", name, timeout=timeout)
            return fn

        return register

    def every(
        self, interval: float | timedelta, *, retry: RetryPolicy | None = None,
        name: str | None = None, timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Run a handler every ``interval`` (seconds or a timedelta), on a durable timer
        (``timeout``: as in :meth:`on`)."""
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
        if seconds <= 0:
            raise ConfigError(f"service {self.name!r}: every() needs a positive interval")

        def register(fn: F) -> F:
            self._add(fn, "schedule", name, every=seconds, retry=retry, timeout=timeout)
            return fn

        return register

    def cron(
        self, expression: str, *, retry: RetryPolicy | None = None, name: str | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Run a handler on a cron schedule (five fields, UTC), on a durable timer
        (``timeout``: as in :meth:`on`)."""
        check_cron(expression, f"service {self.name!r}")

        def register(fn: F) -> F:
            self._add(fn, "schedule", name, cron=expression, retry=retry, timeout=timeout)
            return fn

        return register

    # -- HTTP routes (served by setpiece.gateway) -------------------------------------------

    def route(
        self,
        method: str,
        path: str,
        *,
        scopes: typing.Iterable[str] = (),
        public: bool = False,
        name: str | None = None,
        summary: str | None = None,
    ) -> Callable[[F], F]:
        """Serve ``method path`` (``/notes/{name}``) with a handler, behind the gateway.

        The caller's bearer token must carry every scope in ``scopes`` (``public=True``: no token
        needed). Parameters named in the path come from the path, a parameter named ``body`` or
        annotated with a pydantic model or msgspec Struct is the JSON body, ``ctx`` is the
        context, and the others are query parameters; each is decoded into its annotation.
        """
        def register(fn: F) -> F:
            route_name = str(name or getattr(fn, "__name__", ""))
            check_name("route", route_name)
            where = f"route {self.name}.{route_name}"
            if any(r.name == route_name for r in self.routes):
                raise ConfigError(f"{where}: declared twice (pass name= to tell them apart)")
            verb = method.upper()
            if verb not in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                raise ConfigError(f"{where}: unsupported HTTP method {method!r}")
            if isinstance(scopes, str):
                raise ConfigError(f"{where}: scopes is a list of strings, not one string")
            route = HttpRoute(
                self.name, route_name, verb, path, fn, tuple(scopes), public, summary,
                compile_signature(fn, path, where),
            )
            self.routes.append(route)
            return fn

        return register

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        """``route("GET", path, ...)``."""
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        """``route("POST", path, ...)``."""
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[F], F]:
        """``route("PUT", path, ...)``."""
        return self.route("PUT", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[F], F]:
        """``route("DELETE", path, ...)``."""
        return self.route("DELETE", path, **options)

