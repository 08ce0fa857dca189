"""The stack: the whole architecture in code — services, buses, streams — and how to start it.

::

    stack = Stack("rewards", services=[loyalty, promotions], streams=[Stream("orders")])
    async with stack.start(engine="sqlite:///rewards.db") as rt:
        await rt.publish(Event(type="product_registered", source="app", data={...}))
        await rt.drain()

A bus named ``default`` always exists. Every reference (a handler's bus or stream, a rule's
target) is checked when the stack is built, with an error that names what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from setpiece.bus import DEFAULT_BUS, Bus, WorkflowTarget
from setpiece.clock import Clock
from setpiece.errors import ConfigError
from setpiece.http import Authenticator, CallPolicy, VersionRoutes
from setpiece.observability import Observability
from setpiece.rollout import Rollout, check_rollout
from setpiece.route_table import check_routes
from setpiece.schemas.schema import Schema, versions_by_type
from setpiece.service import Service
from setpiece.sourcing.aggregate import Aggregate
from setpiece.stream import Stream, check_name
from setpiece.views import declarations as view_kinds
from setpiece.views.declarations import Join, StreamJoin, Table, TableJoin, View
from setpiece.workflows.workflow import Workflow

if TYPE_CHECKING:
    # Only Stack.start, Stack.asgi and _Started name these (the one door down to the runtime).
    from setpiece._assembly import Gateway, Runtime, RuntimeConfig

__all__ = ["Stack"]

N = TypeVar("N", Service, Bus, Stream)


class Stack:
    """Services, buses, streams, workflows, event schemas and event-sourced aggregates, checked
    together.

    ``schemas``: a :class:`~setpiece.schemas.Schema` per event type and version; every publish
    is validated against them (see :mod:`setpiece.schemas`).

    The HTTP face (declared with :mod:`setpiece.http`, served by :mod:`setpiece.gateway`):
    ``auth`` checks bearer tokens (a :class:`~setpiece.JWTAuth`, or any
    :class:`~setpiece.http.Authenticator`), ``routes`` splits traffic between versions (a
    :class:`~setpiece.VersionRoutes`), ``calls`` sets timeouts, retries and breakers (a
    :class:`~setpiece.CallPolicy`).

    ``rollouts`` runs a second version of a service's event consumers beside the first, as a
    canary or a shadow (a :class:`~setpiece.Rollout` each; see :mod:`setpiece.rollout`).
    ``observe`` turns on metrics and traces (an :class:`~setpiece.Observability`; see
    ``docs/observe.md``).
    """

    def __init__(
        self,
        name: str,
        *,
        services: Sequence[Service] = (),
        buses: Sequence[Bus] = (),
        streams: Sequence[Stream] = (),
        default_bus: str = DEFAULT_BUS,
        auth: Authenticator | None = None,
        routes: VersionRoutes | None = None,
        calls: CallPolicy | None = None,
        workflows: Sequence[Workflow] = (),
        rollouts: Sequence[Rollout] = (),
        views: Sequence[View] = (),
        schemas: Sequence[Schema] = (),
        aggregates: Sequence[Aggregate] = (),
        observe: Observability | None = None,
    ) -> None:
        check_name("stack", name)
        self.name = name
        self.default_bus = default_bus
        self.services = _by_name("service", services)
        self.buses = _by_name("bus", buses)
        self.streams = _by_name("stream", streams)
        self.workflows: dict[str, Workflow] = {}
        for workflow in workflows:
            if workflow.name in self.workflows:
                raise ConfigError(f"the stack declares two of workflow {workflow.name!r}")
            self.workflows[workflow.name] = workflow
        self.aggregates: dict[str, Aggregate] = {}
        for aggregate in aggregates:
            if not isinstance(aggregate, Aggregate):
                raise ConfigError(
                    f"aggregates: expected setpiece.sourcing.Aggregate, got {aggregate!r}"
                )
            if aggregate.name in self.aggregates:
                raise ConfigError(f"the stack declares two of aggregate {aggregate.name!r}")
            self.aggregates[aggregate.name] = aggregate
        if default_bus not in self.buses:
            self.buses[default_bus] = Bus(default_bus)
        #: event type -> its declared schemas, oldest version first (setpiece.schemas)
        self.schemas: dict[str, tuple[Schema, ...]] = versions_by_type(schemas)
        self.views: dict[str, View] = {}
        for view in views:
            if not isinstance(view, Table | view_kinds.Aggregate | Join | TableJoin | StreamJoin):
                raise ConfigError(f"views: expected Table, Aggregate, Join, TableJoin or "
                                  f"StreamJoin, got "
                                  f"{type(view).__name__}")
            if view.name in self.views:
                raise ConfigError(f"the stack declares two of view {view.name!r}")
            self.views[view.name] = view
        self.auth = auth
        self.routes = routes
        self.calls = calls
        self.rollouts: dict[str, Rollout] = {}
        for rollout in rollouts:
            if not isinstance(rollout, Rollout):
                raise ConfigError(f"rollouts: expected Rollout, got {type(rollout).__name__}")
            if rollout.service in self.rollouts:
                raise ConfigError(f"the stack declares two rollouts of service "
                                  f"{rollout.service!r} (one candidate at a time)")
            check_rollout(rollout, self.services.get(rollout.service))
            self.rollouts[rollout.service] = rollout
        if observe is not None and not isinstance(observe, Observability):
            raise ConfigError(f"observe: expected setpiece.Observability, got "
                              f"{type(observe).__name__}")
        self.observe = observe
        self._check()
        if any(service.routes for service in self.services.values()):
            check_routes(self)

    def _check(self) -> None:
        for service in self.services.values():
            for handler in service.handlers:
                where = f"handler {handler.qualname}"
                if handler.kind == "event" and handler.bus not in self.buses:
                    raise ConfigError(f"{where}: listens on bus {handler.bus!r}, which the stack "
                                      f"does not declare (buses: {sorted(self.buses)})")
                if handler.kind == "stream" and handler.stream not in self.streams:
                    raise ConfigError(f"{where}: consumes stream {handler.stream!r}, which the "
                                      f"stack does not declare (streams: {sorted(self.streams)})")
        for bus in self.buses.values():
            for rule in bus.rules:
                for target in rule.targets:
                    if isinstance(target, Stream | Bus):
                        self._check_declared(f"rule {bus.name}/{rule.name}", "target", target)
                    if isinstance(target, WorkflowTarget) and target.name not in self.workflows:
                        raise ConfigError(f"rule {bus.name}/{rule.name}: target workflow "
                                          f"{target.name!r} is not declared in the stack")
        for workflow in self.workflows.values():
            workflow.check(self)
        for aggregate in self.aggregates.values():
            if aggregate.bus is not None and aggregate.bus not in self.buses:
                raise ConfigError(f"aggregate {aggregate.name!r}: publishes on bus "
                                  f"{aggregate.bus!r}, which the stack does not declare "
                                  f"(buses: {sorted(self.buses)})")
        for view in self.views.values():
            self._check_view(view)

    def _check_declared(self, where: str, what: str, place: Stream | Bus) -> None:
        """A stream or bus that ``where`` names (as its ``what``) must be the stack's own."""
        if isinstance(place, Stream):
            ok, kind, kinds, names = (self.streams.get(place.name) == place, "stream", "streams",
                                      sorted(self.streams))
        else:
            ok, kind, kinds, names = (self.buses.get(place.name) is place, "bus", "buses",
                                      sorted(self.buses))
        if not ok:
            raise ConfigError(f"{where}: {what} {kind} {place.name!r} is not declared in the "
                              f"stack ({kinds}: {names})")

    def _check_view(self, view: View) -> None:
        where = f"view {view.name!r}"
        if isinstance(view, TableJoin):
            for side in (view.left, view.right):
                if self.views.get(side.name) is not side:
                    raise ConfigError(f"{where}: joins table {side.name!r}, which the stack "
                                      "does not declare in views=")
            return
        places: list[tuple[str, Stream | Bus | None]]
        if isinstance(view, StreamJoin):
            places = [("left", view.left), ("right", view.right), ("emit_to", view.emit_to)]
        else:
            places = [("source", view.source)]
        if isinstance(view, view_kinds.Aggregate | Join):
            places.append(("emit_to", view.emit_to))
        for what, place in places:
            if place is not None:
                self._check_declared(where, what, place)
        if isinstance(view, StreamJoin):
            left, right = view.left, view.right
            if left.partitions != right.partitions:
                raise ConfigError(
                    f"{where}: not co-partitioned: {_kind(left)} {left.name!r} has "
                    f"{left.partitions} partitions, {_kind(right)} {right.name!r} has "
                    f"{right.partitions}")
        if isinstance(view, Join):
            table = self.views.get(view.table.name)
            if table is not view.table:
                raise ConfigError(f"{where}: joins table {view.table.name!r}, which the stack "
                                  "does not declare in views=")
            left, right = view.source, view.table.source
            if left.partitions != right.partitions:
                raise ConfigError(
                    f"{where}: not co-partitioned: {_kind(left)} {left.name!r} has "
                    f"{left.partitions} partitions, the table's source {right.name!r} has "
                    f"{right.partitions}")

    def start(
        self,
        engine: str | os.PathLike[str] | None = None,
        *,
        store: str | None = None,
        config: RuntimeConfig | None = None,
        clock: Clock | None = None,
    ) -> _Started:
        """Start the stack on an engine URL (``memory``, ``sqlite:///file.db``, ``nats://…``).

        Use it as ``async with stack.start(...) as rt``. A ``pathlib.Path`` names an SQLite
        file. Without a URL, ``SETPIECE_ENGINE`` (and
        ``SETPIECE_STORE``) are read, then ``sqlite:///.setpiece/<stack>.db``. ``clock`` is
        the clock under the runtime's timers, schedules and retries (the system's by default;
        a :class:`~setpiece.testing.VirtualClock` in tests).
        """
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError(
                f"Stack.start(clock=...): a setpiece Clock (e.g. VirtualClock), "
                f"not {type(clock).__name__}"
            )
        if isinstance(engine, os.PathLike):  # a path names an SQLite file
            engine = f"sqlite:///{Path(engine).resolve()}"
        url = engine or os.environ.get("SETPIECE_ENGINE") or f"sqlite:///.setpiece/{self.name}.db"
        return _Started(self, url, store or os.environ.get("SETPIECE_STORE"), config, clock)

    def asgi(
        self,
        engine: str | None = None,
        *,
        store: str | None = None,
        config: RuntimeConfig | None = None,
        address: str | None = None,
    ) -> Gateway:
        """The gateway as an ASGI app that starts the stack in its lifespan (for uvicorn).

        ``engine``, ``store`` and ``config`` are as for :meth:`start`; ``address`` is the URL
        the app is served at, registered so other gateways can route to this runtime.
        """
        from setpiece._assembly import gateway_app  # the one door down to the runtime

        return gateway_app(self, starter=self.start(engine, store=store, config=config),
                       address=address)

    def __repr__(self) -> str:
        return (f"Stack({self.name!r}, services={list(self.services)}, buses={list(self.buses)}, "
                f"streams={list(self.streams)})")


class _Started:
    """``async with stack.start(...) as rt``: the runtime runs inside the block."""

    def __init__(
        self, stack: Stack, url: str, store: str | None, config: RuntimeConfig | None,
        clock: Clock | None = None,
    ) -> None:
        self._stack, self._url, self._store, self._config = stack, url, store, config
        self._clock = clock
        self._runtime: Runtime | None = None

    async def __aenter__(self) -> Runtime:
        from setpiece._assembly import open_runtime  # the one door down to the runtime

        self._runtime = await open_runtime(
            self._stack, self._url, store=self._store, config=self._config, clock=self._clock
        )
        return self._runtime

    async def __aexit__(self, *exc_info: object) -> None:
        runtime = self._runtime
        if runtime is not None:
            self._runtime = None
            try:
                await runtime.stop()
            finally:
                await runtime.engine.close()


def _by_name(kind: str, items: Sequence[N]) -> dict[str, N]:
    out: dict[str, N] = {}
    for item in items:
        if item.name in out:
            raise ConfigError(f"the stack declares two of {kind} {item.name!r}")
        out[item.name] = item
    return out


def _kind(place: Stream | Bus) -> str:
    return "stream" if isinstance(place, Stream) else "bus"
