"""The runtime: a stack brought to life on an engine.

It creates the streams a stack declares, turns every handler and rule target into a consumer,
fires timers (one dispatcher: schedules, and the namespaces extensions register), registers its
services for discovery, and offers the handle that code and tests use: publish, drain, read a
service's store, list and redrive dead letters, replay a bus's archive.

The parts above it (the HTTP gateway, durable workflows, ...) are
:class:`~setpiece.runtime.extension.Extension` s: they plug in through the ``add_*`` methods
and the runtime never imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from setpiece.bus import Bus, HttpTarget, Rule, bus_stream_name
from setpiece.clock import SYSTEM_CLOCK, Clock
from setpiece.context import store_namespace
from setpiece.engine.contract import Engine, StreamSpec
from setpiece.errors import ConfigError, DrainTimeout, EventError, SchemaError
from setpiece.event import Event
from setpiece.policy import RetryPolicy
from setpiece.runtime import letters
from setpiece.runtime.actions import bus_target, handler_action, http_target, stream_target
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.consumer import DEAD_LETTERS, Consumer
from setpiece.runtime.discovery import Instance, Registry
from setpiece.runtime.extension import (
    Action,
    EventCheck,
    Extension,
    HttpEndpoint,
    TargetKind,
    TimerHandler,
)
from setpiece.runtime.flow import Flow
from setpiece.runtime.letters import DeadLetter
from setpiece.runtime.outgoing import GroupCommitter, encode_checked, prepare
from setpiece.runtime.reader import StreamReader
from setpiece.runtime.schedules import SCHEDULES
from setpiece.runtime.scope import ContextService, Scope
from setpiece.runtime.stores import StoreReader
from setpiece.runtime.timeouts import Deadline, LoopWatch
from setpiece.runtime.timers import Schedules, TimerDispatcher
from setpiece.runtime.unit import Attempt
from setpiece.service import Handler
from setpiece.stream import Stream

if TYPE_CHECKING:
    from setpiece.stack import Stack

__all__ = ["Runtime"]

log = logging.getLogger("setpiece.runtime")
DEFAULT_RETRY = RetryPolicy()
_HOUSEKEEPING_INTERVAL = 60.0
# Before a crashed consumer's restart: 0.1 s doubling to 30 s (only the delays: it restarts
# for as long as the runtime runs).
_RESTART = RetryPolicy(initial_delay=0.1, max_delay=30.0, jitter=0)
_RESTART_RESET = 60.0  # a run this long resets the backoff


class Runtime:
    """A running stack. Get one from ``stack.start(...)``."""

    def __init__(
        self,
        stack: Stack,
        engine: Engine,
        config: RuntimeConfig,
        extensions: Sequence[Extension] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.stack = stack
        self.engine = engine
        self.config = config
        #: the clock under every timer, schedule and retry backoff (a VirtualClock in tests)
        self.clock = clock
        self._detach_clock: Callable[[], None] | None = None
        self.consumers: list[Consumer] = []
        self._extensions: dict[str, Extension] = {}
        for extension in extensions:
            if extension.name in self._extensions:
                raise ConfigError(f"two extensions named {extension.name!r}")
            self._extensions[extension.name] = extension
        self._committer = GroupCommitter(engine)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._progress = asyncio.Event()
        self._stopping = False
        self._targets: dict[tuple[str | None, str | None], str] = {}  # _target_stream's answers
        self._streams: set[str] = set()
        self._stopped = asyncio.Event()
        self._http: Any = None
        self._readers: dict[str, StreamReader] = {}
        self._watch: LoopWatch | None = None
        self._down: dict[str, tuple[str, int]] = {}  # supervised tasks ended, restarting
        self._restarts: dict[str, int] = {}
        self._registry: Registry | None = None
        self._target_kinds: dict[type, TargetKind] = {
            Stream: stream_target, Bus: bus_target, HttpTarget: http_target(self.http_client),
        }
        self._context_services: dict[str, ContextService] = {}
        self._timer_handlers: dict[str, TimerHandler] = {}
        self.endpoints: list[HttpEndpoint] = []
        self._event_checks: list[EventCheck] = []
        self._timers = TimerDispatcher(engine, self._timer_handlers, clock)
        self._schedules = Schedules(
            engine, {}, self._handler_action, self.deadline, DEFAULT_RETRY, self.notify_progress,
            clock,
        )
        self._attached = False
        self._flow = Flow(engine, {
            **{bus_stream_name(b): f"bus {b}" for b in stack.buses},
            **{s: f"stream {s}" for s in stack.streams},
        })

    # -- the extension point (setpiece.runtime.extension) -----------------------------------

    def extension(self, name: str) -> Any:
        """The extension ``name`` attached to this runtime (ConfigError if there is none)."""
        found = self._extensions.get(name)
        if found is None:
            raise ConfigError(
                f"this runtime has no {name!r} (extensions: {sorted(self._extensions)})"
            )
        return found

    def has_extension(self, name: str) -> bool:
        return name in self._extensions

    def add_consumer(self, consumer: Consumer) -> None:
        """Run ``consumer`` with the runtime's own (supervised; stopped with them)."""
        self.consumers.append(consumer)

    def add_task(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop for the runtime's life, supervised (restarted on a crash)."""
        self._background.append((name, run))

    def add_target_kind(self, kind: type, make: TargetKind) -> None:
        """Deliver rule targets of type ``kind`` with the actions ``make`` builds."""
        self._target_kinds[kind] = make

    def add_context_service(self, name: str, make: ContextService) -> None:
        """Offer handlers' contexts a service ``name``, made per attempt by ``make``."""
        self._context_services[name] = make

    def add_timer_handler(self, namespace: str, fire: TimerHandler) -> None:
        """Fire the due timers of ``namespace`` through ``fire`` (the one timer dispatcher)."""
        self._timer_handlers[namespace] = fire

    def add_endpoint(self, endpoint: HttpEndpoint) -> None:
        """Serve ``endpoint`` on the gateway beside the services' routes."""
        self.endpoints.append(endpoint)

    def add_event_check(self, check: EventCheck) -> None:
        """Call ``check(event, bus, stream)`` on every event before it is stored."""
        self._event_checks.append(check)

    @property
    def context_services(self) -> Mapping[str, ContextService]:
        return self._context_services

    def notify_progress(self) -> None:
        """Something committed: wake ``drain`` and the timer dispatcher (timers may be set)."""
        self._progress.set()
        self._timers.wake()

    def wants(self, service: str) -> bool:
        """Does this runtime run ``service`` (``RuntimeConfig.services`` limits a worker)?"""
        return not self.config.services or service in self.config.services

    def scope(self, attempt: Attempt, *, service: str, cause: Event, number: int = 1) -> Scope:
        """The unit of work of one delivery of ``cause`` to a handler of ``service``."""
        return Scope(attempt, service=service, cause=cause, number=number, emit=self.emit,
                     services=self._context_services)

    def http_client(self) -> Any:
        """The runtime's shared ``httpx.AsyncClient`` (HTTP targets and tasks), made on use."""
        if self._http is None:
            try:
                import httpx
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise ConfigError(
                    "HttpTarget needs httpx: pip install 'setpiece[http]'"
                ) from None
            self._http = httpx.AsyncClient()
        return self._http

    def use_http_client(self, client: Any) -> None:
        """Make HTTP targets and tasks call through ``client`` (an ``httpx.AsyncClient``; tests
        give one on a fake transport). The runtime closes it when it stops."""
        self._http = client

    # -- starting and stopping --------------------------------------------------------------

    async def start(self) -> None:
        await self._create_streams()
        await self._flow.mark()  # rt.published / rt.expect see what flows from here on
        await self._attach()
        self._build_consumers()
        await self._prepare_consumers()
        await self._schedules.prepare()
        if self._schedules.handlers:
            self.add_timer_handler(SCHEDULES, self._schedules.fire)
        loop = asyncio.get_running_loop()
        for consumer in self.consumers:  # one task per consumer, in order (see stop)
            self._tasks.append(
                loop.create_task(self._supervise(consumer.label, consumer.run),
                                 name=consumer.label)
            )
        if self._timer_handlers:
            self._background.append(("timers", self._timers.run))
        for name, run in self._background:
            self._tasks.append(loop.create_task(self._supervise(name, run), name=name))
        self._tasks.append(loop.create_task(self._housekeeping(), name="housekeeping"))
        self._watch = self._loop_watch()
        self._watch.start()
        await self._start_registry()
        self._detach_clock = self.clock.attach(self.settle)

    async def provision(self) -> None:
        """Create the stack's streams and consumer groups, and consume nothing.

        For tools (``setpiece publish``): the groups then exist at their starting offsets, so
        the stack's handlers and rules receive events published before any worker first ran.
        Idempotent. Use it instead of :meth:`start`, not before it.
        """
        await self._create_streams()
        if not self.consumers:
            await self._attach()
            self._build_consumers()
        await self._prepare_consumers()

    async def _create_streams(self) -> None:
        # Concurrently: on the production engine each is a few round trips to both servers.
        specs = self._stream_specs()
        await asyncio.gather(*(self.engine.create_stream(spec) for spec in specs))
        self._streams.update(spec.name for spec in specs)

    async def _prepare_consumers(self) -> None:
        """Create every consumer's group offsets (concurrently: each group is its own)."""
        await asyncio.gather(*(consumer.prepare() for consumer in self.consumers))

    async def _attach(self) -> None:
        if not self._attached:
            self._attached = True
            for extension in self._extensions.values():
                await extension.attach(self)

    def _stream_specs(self) -> list[StreamSpec]:
        specs = [StreamSpec(DEAD_LETTERS, 1, None)]
        specs += [
            StreamSpec(bus_stream_name(b.name), b.partitions, b.archive_retention)
            for b in self.stack.buses.values()
        ]
        specs += [
            StreamSpec(s.name, s.partitions, s.retention)
            for s in self.stack.streams.values()
        ]
        return specs

    async def stop(self) -> None:
        """Stop consuming: finish the batches in flight (up to the grace period), then leave."""
        if self._stopping:
            return
        self._stopping = True
        if self._detach_clock is not None:
            self._detach_clock()
        if self._registry is not None:  # leave the registry first: gateways stop routing here
            await self._registry.stop()
        for consumer in self.consumers:
            consumer.stop()
        self._timers.stop()
        self._stopped.set()
        for extension in reversed(self._extensions.values()):
            await extension.stop()
        for consumer, task in zip(self.consumers, self._tasks, strict=False):
            if not consumer.busy:  # idle between batches: nothing to finish
                task.cancel()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.config.shutdown_grace)
            for task in pending:  # uncommitted work is handed back: it is read again later
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task %s ended with %r", task.get_name(), task.exception())
        await self._committer.idle()
        if self._watch is not None:
            await self._watch.stop()
        if self._http is not None:
            await self._http.aclose()

    # -- supervision and health -------------------------------------------------------------

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a consumer (or a background loop) for the runtime's life: when it ends with an
        error, log it at once, report it down (:meth:`health`), and start it again after a
        backoff (0.1 s doubling to 30 s; back to 0.1 s after a run of a minute or more)."""
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await run()
                return  # stopped
            except Exception as exc:
                if self._stopping or getattr(self.engine, "_closed", False):
                    raise
                failures = 1 if time.monotonic() - started >= _RESTART_RESET else failures + 1
                delay = _RESTART.delay(failures)
                self._down[name] = (f"{type(exc).__name__}: {exc}", failures)
                log.error("%s stopped unexpectedly (%s: %s); restarting in %.1fs",
                          name, type(exc).__name__, exc, delay, exc_info=exc)
                del exc  # no cycle through the traceback's frames while waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)
            self._down.pop(name, None)
            self._restarts[name] = self._restarts.get(name, 0) + 1

    def health(self) -> dict[str, Any]:
        """Whether every consumer (and background loop) of this runtime is running.

        ``{"status": "ok" | "unhealthy", "down": {name: error}, "restarts": {name: n}}``: a
        name is in ``down`` from the moment its task ended with an error until it is running
        again; ``restarts`` counts the restarts since the runtime started.
        """
        down = {name: why for name, (why, _) in self._down.items()}
        return {
            "status": "unhealthy" if down or self._stopping else "ok",
            "down": down,
            "restarts": dict(self._restarts),
        }

    # -- consumers --------------------------------------------------------------------------

    def _build_consumers(self) -> None:
        schedules: dict[str, Handler] = {}
        for service in self.stack.services.values():
            if not self.wants(service.name):
                continue
            for handler in service.handlers:
                if handler.kind == "schedule":
                    schedules[handler.qualname] = handler
                    continue
                if handler.kind == "task":  # called by workflows, subscribed to nothing
                    continue
                self.consumers.append(self._handler_consumer(handler))
        self._schedules.handlers = schedules
        if self.config.services:
            return  # rule targets (forwarders) run in workers that run every service
        for bus in self.stack.buses.values():
            for rule in bus.rules:
                for index, target in enumerate(rule.targets):
                    self.consumers.append(self._target_consumer(bus, rule, index, target))

    def _handler_action(self, handler: Handler) -> Action:
        return handler_action(handler, self.emit, self._context_services)

    def _handler_consumer(self, handler: Handler) -> Consumer:
        if handler.kind == "event":
            assert handler.bus is not None and handler.compiled is not None
            stream = bus_stream_name(handler.bus)
            accept = handler.compiled
            start_at_end = True
        else:
            assert handler.stream is not None
            stream, accept, start_at_end = handler.stream, None, False
        return Consumer(
            engine=self.engine,
            clock=self.clock,
            config=self.config,
            group=handler.qualname,
            stream=stream,
            label=handler.qualname,
            action=self._handler_action(handler),
            retry=handler.retry or DEFAULT_RETRY,
            concurrency=handler.concurrency or self.config.concurrency,
            accept=accept,
            reader=self.reader(stream),
            rule=handler.qualname,
            start_at_end=start_at_end,
            on_commit=self._progress.set,
            deadline=self.deadline(handler),
        )

    def deadline(self, handler: Handler) -> Deadline:
        """The time limit of one attempt of ``handler`` (its ``timeout=`` or the config's)."""
        return Deadline(handler.qualname, handler.timeout or self.config.handler_timeout)

    def _loop_watch(self) -> LoopWatch:
        """Names the async def handler or route that blocks the event loop, if one does."""
        code: dict[Any, str] = {}
        for service in self.stack.services.values():
            for handler in service.handlers:
                if handler.is_async:
                    code[getattr(handler.fn, "__code__", None)] = f"handler {handler.qualname}"
            for route in service.routes:
                code[getattr(route.fn, "__code__", None)] = f"route {service.name}.{route.name}"
        code.pop(None, None)
        return LoopWatch(code)

    def _target_consumer(self, bus: Bus, rule: Rule, index: int, target: Any) -> Consumer:
        make = self._target_kinds.get(type(target))
        if make is None:
            raise ConfigError(
                f"rule {bus.name}/{rule.name}: nothing in this runtime delivers to a "
                f"{type(target).__name__} target"
            )
        name, action = make(bus, rule, index, target)
        group = f"rule.{bus.name}.{rule.name}.{name}"
        return Consumer(
            engine=self.engine,
            clock=self.clock,
            config=self.config,
            group=group,
            stream=bus_stream_name(bus.name),
            label=f"rule {bus.name}/{rule.name} -> {name}",
            action=action,
            retry=rule.retry or DEFAULT_RETRY,
            concurrency=self.config.concurrency,
            accept=rule.compiled,
            reader=self.reader(bus_stream_name(bus.name)),
            rule=rule.name,
            start_at_end=True,
            on_commit=self._progress.set,
        )

    def reader(self, stream: str) -> StreamReader:
        """The one reader of ``stream`` that this runtime's consumers of it share."""
        reader = self._readers.get(stream)
        if reader is None:
            reader = self._readers[stream] = StreamReader(self.engine, stream)
        return reader

    # -- publishing -------------------------------------------------------------------------

    def _target_stream(self, bus: str | None, stream: str | None) -> str:
        target = self._targets.get((bus, stream))
        if target is not None:
            return target
        if stream is not None:
            if bus is not None:
                raise ConfigError("publish: name a bus or a stream, not both")
            if stream not in self.stack.streams:
                raise ConfigError(f"publish: the stack has no stream {stream!r}")
            target = stream
        else:
            name = bus or self.stack.default_bus
            if name not in self.stack.buses:
                raise ConfigError(f"publish: the stack has no bus {name!r}")
            target = bus_stream_name(name)
        if len(self._targets) < 1024:
            self._targets[(bus, stream)] = target
        return target

    def emit(
        self,
        attempt: Attempt,
        event: Event,
        bus: str | None,
        stream: str | None,
        *,
        cause: Event,
        service: str,
    ) -> None:
        """Emit ``event`` into ``attempt`` (commits with it) as caused by ``cause`` in a handler
        of ``service``: it inherits the cause's trace, tenant, correlation and partition key."""
        out = prepare(event, cause=cause, service=service)
        if self._event_checks:
            for check in self._event_checks:
                check(out, None if stream is not None else bus or self.stack.default_bus, stream)
        attempt.emit(
            self._target_stream(bus, stream),
            out.partitionkey,
            encode_checked(out, self.config.max_event_bytes),
        )

    async def publish(
        self, event: Event, *, bus: str | None = None, stream: str | None = None
    ) -> Event:
        """Put an event onto a bus (the default bus unless named) or a stream; durable on return.

        Returns the event as stored. Raises EventError for a malformed or oversized event.
        """
        return (await self.publish_many([event], bus=bus, stream=stream))[0]

    async def publish_many(
        self, events: Iterable[Event], *, bus: str | None = None, stream: str | None = None
    ) -> list[Event]:
        """Publish many events in one transaction (all are checked before any is stored)."""
        target = self._target_stream(bus, stream)
        checks = self._event_checks
        bus = None if stream is not None else bus or self.stack.default_bus
        out: list[Event] = []
        records: list[tuple[str, str | None, bytes]] = []
        for index, event in enumerate(events):
            try:
                ready = prepare(event, cause=None, service=None)
                for check in checks:
                    check(ready, bus, stream)
                data = encode_checked(ready, self.config.max_event_bytes)
            except SchemaError as exc:
                raise SchemaError(f"event #{index}: {exc}", event_type=exc.event_type,
                                  path=exc.path, rule=exc.rule) from None
            except EventError as exc:
                raise EventError(f"event #{index}: {exc}", field=exc.field) from None
            out.append(ready)
            records.append((target, ready.partitionkey, data))
        if records:
            await self._committer.append(records)
        return out

    # -- what flowed (setpiece.runtime.flow) --------------------------------------------------

    async def published(self, pattern: object | None = None) -> list[Event]:
        """The events published on the stack's buses and streams since it started (by anyone:
        ``publish``, handlers, rules), oldest first; with an EventBridge ``pattern``, those
        that match it."""
        return await self._flow.published(pattern)

    async def expect(self, pattern: object, *, timeout: float = 5.0) -> Event:
        """The first event matching ``pattern`` published since the stack started, waiting up
        to ``timeout`` seconds for one. Raises AssertionError listing the events that flowed
        nearest to the pattern."""
        __tracebackhide__ = True  # pytest: a failure points at the test, not here
        return await self._flow.expect(pattern, timeout)

    # -- waiting for quiet ------------------------------------------------------------------

    async def lag(self) -> dict[str, int]:
        """Records not yet committed, per consumer (handler or rule target)."""
        return {c.label: await c.lag() for c in self.consumers}

    async def drain(self, timeout: float = 60.0) -> None:
        """Return once everything triggered so far is handled or dead-lettered.

        Raises DrainTimeout (naming the consumers still behind) after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        quiet_turns = 0
        while True:
            await self._committer.idle()
            self._progress.clear()
            behind = {label: n for label, n in (await self.lag()).items() if n}
            busy = any(c.busy for c in self.consumers)
            if not behind and not busy:
                quiet_turns += 1
                if quiet_turns >= 2:
                    return
            else:
                quiet_turns = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = ", ".join(f"{k}: {v}" for k, v in behind.items()) or "deliveries in flight"
                raise DrainTimeout(f"drain: still pending after {timeout}s ({detail})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.05))

    async def settle(self, timeout: float = 30.0) -> None:
        """Return once all that is due now is handled, and the rest waits on the clock.

        What a :class:`~setpiece.clock.VirtualClock` awaits before it moves time on: every
        consumer has caught up or waits on the clock for a retry's backoff, and no timer that
        is due now is left unfired. Raises DrainTimeout after ``timeout`` seconds of wall time.
        """
        deadline = time.monotonic() + timeout
        quiet_turns = 0
        while not self._stopping:
            await self._committer.idle()
            self._progress.clear()
            behind: dict[str, int] = {}
            for consumer in self.consumers:
                if consumer.parked:
                    continue
                lag = await consumer.lag()
                if lag or consumer.busy:
                    behind[consumer.label] = lag
            timers = self._schedules.parked or await self._timers.settled()
            if not behind and timers:
                quiet_turns += 1
                if quiet_turns >= 2:
                    return
                for _ in range(3):  # let what was just woken reach its next wait
                    await asyncio.sleep(0)
                continue
            quiet_turns = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = ", ".join(f"{k}: {v}" for k, v in behind.items()) or "timers due"
                raise DrainTimeout(f"settle: still busy after {timeout}s ({detail})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.005))

    # -- stores -----------------------------------------------------------------------------

    def store(self, service: str, *, tenant: str | None = None) -> StoreReader:
        """Read a service's committed store from outside (tests, tools)."""
        if service not in self.stack.services:
            raise ConfigError(f"the stack has no service {service!r}")
        return StoreReader(self.engine, store_namespace(service, tenant))

    # -- dead letters and replay (setpiece.runtime.letters) ----------------------------------

    async def dead_letters(self, *, include_redriven: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first (those already redriven are left out by default)."""
        return await letters.list_dead_letters(self.engine, include_redriven=include_redriven)

    async def redrive(self, ids: Iterable[str] | None = None) -> int:
        """Send dead-lettered events back to the consumer that failed them; returns how many.

        Each goes back onto its stream aimed at that one consumer group (others ignore it), and
        is marked redriven in the same transaction.
        """
        return await letters.redrive(self.engine, ids)

    async def replay(
        self,
        *,
        bus: str | None = None,
        start: datetime | float,
        end: datetime | float | None = None,
        rule: str | None = None,
        name: str | None = None,
    ) -> int:
        """Re-send a bus's archived events from ``[start, end)`` through its rules.

        With ``rule``, only that rule (or ``service.handler``) receives them. Replayed events keep
        their ids but are deduplicated per replay ``name``, so handlers see them once more.
        Returns how many events were replayed.
        """
        return await letters.replay(self.engine, self.stack, bus=bus, start=start, end=end,
                                    rule=rule, name=name)

    # -- housekeeping -----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Forget old inbox entries and trim streams past their retention, now and then."""
        while not self._stopping:
            try:
                await self.engine.prune_inbox(time.time() - self.config.inbox_retention)
                for spec in await self.engine.streams():
                    if spec.name in self._streams and spec.retention is not None:
                        await self.engine.trim(spec.name, time.time() - spec.retention)
            except Exception:  # housekeeping must never stop the runtime
                log.exception("housekeeping failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), _HOUSEKEEPING_INTERVAL)

    # -- discovery (setpiece.runtime.discovery) ---------------------------------------------

    async def _start_registry(self) -> None:
        self._registry = Registry(
            self.engine, stack=self.stack.name, member=self.config.member,
            services=[(s.name, s.version) for s in self.stack.services.values()
                      if self.wants(s.name)],
            interval=self.config.heartbeat_interval, ttl=self.config.session_timeout,
        )
        await self._registry.start()

    @property
    def registry(self) -> Registry:
        """This runtime's :class:`~setpiece.runtime.discovery.Registry` (discovery)."""
        if self._registry is None:
            raise ConfigError("the runtime is not started")
        return self._registry

    async def instances(self, service: str | None = None) -> list[Instance]:
        """The live instances of a service (of every service without a name), from discovery."""
        return await self.registry.live(service)

    async def advertise(self, address: str | None) -> None:
        """Register the URL this runtime's gateway listens on, so other gateways route here."""
        await self.registry.advertise(address)
