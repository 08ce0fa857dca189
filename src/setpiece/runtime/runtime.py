"""The runtime: a stack brought to life on an engine.

It creates the streams a stack declares, turns every handler and rule target into a consumer,
fires schedules, and offers the handle that code and tests use: publish, drain, read a service's
store, list and redrive dead letters, replay a bus's archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.bus import Bus, HttpTarget, Rule, WorkflowTarget, bus_stream_name
from setpiece.context import Context, ServiceStore, check_key, store_namespace
from setpiece.engine.contract import Engine, KVWrite, StreamSpec, Timer, UnitOfWork
from setpiece.errors import (
    ConfigError,
    ConflictError,
    DrainTimeout,
    EventError,
    HandlerError,
    RefusedError,
)
from setpiece.event import Event, encode_event
from setpiece.policy import RetryPolicy
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.consumer import (
    DEAD_LETTERS,
    REPLAY_MARK,
    RULE_MARK,
    TARGET_MARK,
    Consumer,
    dead_letter_record,
    deliver,
)
from setpiece.runtime.outgoing import GroupCommitter, encode_checked, prepare
from setpiece.runtime.reader import StreamReader
from setpiece.runtime.schedules import SCHEDULES, next_due
from setpiece.runtime.timeouts import Deadline, LoopWatch
from setpiece.runtime.unit import Attempt, Batch
from setpiece.service import Handler
from setpiece.stream import Stream
from setpiece.workflows._api import WorkflowMethods
from setpiece.workflows._tokens import DeliveryTokens

if TYPE_CHECKING:
    from setpiece.patterns import InputTransformer
    from setpiece.stack import Stack
    from setpiece.workflows._durable import WorkflowRunner

__all__ = ["DeadLetter", "Runtime", "StoreReader"]

log = logging.getLogger("setpiece.runtime")
DEFAULT_RETRY = RetryPolicy()
_HOUSEKEEPING_INTERVAL = 60.0
# Before a crashed consumer's restart: 0.1 s doubling to 30 s (only the delays: it restarts
# for as long as the runtime runs).
_RESTART = RetryPolicy(initial_delay=0.1, max_delay=30.0, jitter=0)
_RESTART_RESET = 60.0  # a run this long resets the backoff


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that failed for good, with why. ``id`` names it for :meth:`Runtime.redrive`."""

    id: str
    event: Event | None
    error: str
    traceback: str
    handler: str
    group: str | None
    stream: str | None
    attempts: int
    time: str
    raw: str | None = None


class StoreReader:
    """A service's store read from outside a delivery (tests, tools). Reads committed state."""

    def __init__(self, engine: Engine, namespace: str) -> None:
        self._engine = engine
        self.namespace = namespace

    async def get(self, key: str, default: Any = None) -> Any:
        found = await self._engine.kv_get(self.namespace, [check_key(key)])
        return msgspec.json.decode(found[key][0]) if key in found else default

    async def items(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, Any]]:
        rows = await self._engine.kv_scan(self.namespace, prefix, limit)
        return [(k, msgspec.json.decode(v)) for k, v in rows]


def transformed(transform: InputTransformer, event: Event, rule_name: str) -> Event:
    """The event with its data replaced by the transformer's output (JSON if it parses)."""
    text = transform.apply(event.pattern_view(), rule_name=rule_name)
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        data = text  # a plain-text template
    return event.replace(data=data)


def _results(value: Any, where: str) -> Sequence[Event]:
    if value is None:
        return ()
    if isinstance(value, Event):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, Event) for v in value):
        return value
    raise HandlerError(
        f"{where} returned {type(value).__name__}; return an Event, a list of Events, or None"
    )


class Runtime(WorkflowMethods):
    """A running stack. Get one from ``stack.start(...)``.

    Besides publishing and draining, it runs the stack's durable workflows: see the methods
    it inherits from :class:`~setpiece.workflows._api.WorkflowMethods` (``start_execution``,
    ``executions``, ``send_task_success``, ...)."""

    _registry: Any = None  # setpiece.gateway.registry.Registry, once started
    _gateway: Any = None  # setpiece.gateway.app.Gateway, made by asgi()

    def __init__(self, stack: Stack, engine: Engine, config: RuntimeConfig) -> None:
        self.stack = stack
        self.engine = engine
        self.config = config
        self.consumers: list[Consumer] = []
        self._committer = GroupCommitter(engine)
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Event()
        self._stopping = False
        self._targets: dict[tuple[str | None, str | None], str] = {}  # _target_stream's answers
        self._streams: set[str] = set()
        self._schedules: dict[str, Handler] = {}
        self._timer_wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._http: Any = None
        self._readers: dict[str, StreamReader] = {}
        self._workflows: WorkflowRunner | None = None
        self._watch: LoopWatch | None = None
        self._down: dict[str, tuple[str, int]] = {}  # supervised tasks ended, restarting
        self._restarts: dict[str, int] = {}

    # -- starting and stopping --------------------------------------------------------------

    async def start(self) -> None:
        for spec in self._stream_specs():
            await self.engine.create_stream(spec)
            self._streams.add(spec.name)
        self._workflows = self._workflow_runner()
        self._build_consumers()
        if self._workflows is not None:
            self.consumers.append(await self._workflows.prepare())
        for consumer in self.consumers:
            await consumer.prepare()
        await self._prepare_schedules()
        loop = asyncio.get_running_loop()
        for consumer in self.consumers:  # one task per consumer, in order (see stop)
            self._tasks.append(
                loop.create_task(self._supervise(consumer.label, consumer.run),
                                 name=consumer.label)
            )
        if self._schedules:
            self._tasks.append(loop.create_task(
                self._supervise("schedules", self._run_schedules), name="schedules"
            ))
        if self._workflows is not None:
            self._tasks.append(loop.create_task(
                self._supervise("workflow timers", self._workflows.run_timers),
                name="workflow timers",
            ))
        self._tasks.append(loop.create_task(self._housekeeping(), name="housekeeping"))
        self._watch = self._loop_watch()
        self._watch.start()
        await self._start_registry()

    async def provision(self) -> None:
        """Create the stack's streams and consumer groups, and consume nothing.

        For tools (``setpiece publish``): the groups then exist at their starting offsets, so
        the stack's handlers and rules receive events published before any worker first ran.
        Idempotent. Use it instead of :meth:`start`, not before it.
        """
        for spec in self._stream_specs():
            await self.engine.create_stream(spec)
            self._streams.add(spec.name)
        if not self.consumers:
            self._build_consumers()
        for consumer in self.consumers:
            await consumer.prepare()

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
        if self._registry is not None:  # leave the registry first: gateways stop routing here
            await self._registry.stop()
        for consumer in self.consumers:
            consumer.stop()
        self._timer_wake.set()
        self._stopped.set()
        if self._workflows is not None:
            self._workflows.stop()
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
        if self._gateway is not None:
            await self._gateway.aclose()

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

    def _wanted(self, service: str) -> bool:
        return not self.config.services or service in self.config.services

    def _build_consumers(self) -> None:
        for service in self.stack.services.values():
            if not self._wanted(service.name):
                continue
            for handler in service.handlers:
                if handler.kind == "schedule":
                    self._schedules[handler.qualname] = handler
                    continue
                if handler.kind == "task":  # called by workflows, subscribed to nothing
                    continue
                self.consumers.append(self._handler_consumer(handler))
        if self.config.services:
            return  # rule targets (forwarders) run in workers that run every service
        for bus in self.stack.buses.values():
            for rule in bus.rules:
                for index, target in enumerate(rule.targets):
                    self.consumers.append(self._target_consumer(bus, rule, index, target))

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
            config=self.config,
            group=handler.qualname,
            stream=stream,
            label=handler.qualname,
            action=self._handler_action(handler),
            retry=handler.retry or DEFAULT_RETRY,
            concurrency=handler.concurrency or self.config.concurrency,
            accept=accept,
            reader=self._reader(stream),
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
        if isinstance(target, Stream):
            name, action = f"stream:{target.name}", self._forward_action(rule, target.name)
        elif isinstance(target, Bus):
            name = f"bus:{target.name}"
            action = self._forward_action(rule, bus_stream_name(target.name))
        elif isinstance(target, WorkflowTarget):
            assert self._workflows is not None
            name = f"workflow:{target.name}"
            action = self._workflows.target_action(rule, target)
        else:
            assert isinstance(target, HttpTarget)
            name, action = f"http:{index}", self._http_action(rule, target)
        group = f"rule.{bus.name}.{rule.name}.{name}"
        return Consumer(
            engine=self.engine,
            config=self.config,
            group=group,
            stream=bus_stream_name(bus.name),
            label=f"rule {bus.name}/{rule.name} -> {name}",
            action=action,
            retry=rule.retry or DEFAULT_RETRY,
            concurrency=self.config.concurrency,
            accept=rule.compiled,
            reader=self._reader(bus_stream_name(bus.name)),
            rule=rule.name,
            start_at_end=True,
            on_commit=self._progress.set,
        )

    def _reader(self, stream: str) -> StreamReader:
        reader = self._readers.get(stream)
        if reader is None:
            reader = self._readers[stream] = StreamReader(self.engine, stream)
        return reader

    def _handler_action(self, handler: Handler) -> Any:
        service = handler.service
        transform = handler.transform
        rule_name = handler.qualname
        name = handler.name
        where = f"handler {handler.qualname}"
        namespace = store_namespace(service)
        engine = self.engine
        emit = self._emit
        invoke = handler.invoke
        # The common case, called without Handler.invoke's dispatch: an async handler of events.
        fn = handler.fn if handler.is_async and handler.kind != "schedule" else None
        adapt = handler.adapt
        wants_ctx = handler.wants_ctx

        async def action(event: Event, attempt: Attempt, number: int) -> None:
            if transform is not None:
                event = transformed(transform, event, rule_name)
            tenant = event.tenant
            store = ServiceStore(
                attempt, namespace if tenant is None else store_namespace(service, tenant)
            )

            def publish(out: Event, bus: str | None, stream: str | None) -> None:
                emit(attempt, out, bus, stream, cause=event, service=service)

            ctx = Context(
                service=service, handler=name, event=event, attempt=number,
                store=store, publish=publish, tokens=DeliveryTokens(attempt, engine),
            )
            if fn is None:
                result = await invoke(event, ctx)
            elif wants_ctx:
                result = await fn(adapt(event), ctx)
            else:
                result = await fn(adapt(event))
            if result is None:
                return
            if isinstance(result, Event):
                emit(attempt, result, None, None, cause=event, service=service)
                return
            for out in _results(result, where):
                emit(attempt, out, None, None, cause=event, service=service)

        return action

    def _forward_action(self, rule: Rule, stream: str) -> Any:
        transform, rule_name = rule.transform, rule.name

        async def action(event: Event, attempt: Attempt, number: int) -> None:
            if transform is not None:
                event = transformed(transform, event, rule_name)
            attempt.emit(stream, event.partitionkey, encode_event(event))

        return action

    def _http_action(self, rule: Rule, target: HttpTarget) -> Any:
        transform, rule_name = rule.transform, rule.name

        async def action(event: Event, attempt: Attempt, number: int) -> None:
            if transform is not None:
                event = transformed(transform, event, rule_name)
            client = self._http_client()
            headers = {"content-type": "application/cloudevents+json", **target.headers}
            response = await client.post(
                target.url, content=event.to_json(), headers=headers, timeout=target.timeout
            )
            if not 200 <= response.status_code < 300:
                raise HandlerError(f"HTTP {response.status_code} from {target.url}")

        return action

    def _http_client(self) -> Any:
        if self._http is None:
            try:
                import httpx
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise ConfigError(
                    "HttpTarget needs httpx: pip install 'setpiece[http]'"
                ) from None
            self._http = httpx.AsyncClient()
        return self._http

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

    def _emit(
        self,
        attempt: Attempt,
        event: Event,
        bus: str | None,
        stream: str | None,
        *,
        cause: Event,
        service: str,
    ) -> None:
        out = prepare(event, cause=cause, service=service)
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
        out: list[Event] = []
        records: list[tuple[str, str | None, bytes]] = []
        for index, event in enumerate(events):
            try:
                ready = prepare(event, cause=None, service=None)
                data = encode_checked(ready, self.config.max_event_bytes)
            except EventError as exc:
                raise EventError(f"event #{index}: {exc}", field=exc.field) from None
            out.append(ready)
            records.append((target, ready.partitionkey, data))
        if records:
            await self._committer.append(records)
        return out

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

    # -- stores -----------------------------------------------------------------------------

    def store(self, service: str, *, tenant: str | None = None) -> StoreReader:
        """Read a service's committed store from outside (tests, tools)."""
        if service not in self.stack.services:
            raise ConfigError(f"the stack has no service {service!r}")
        return StoreReader(self.engine, store_namespace(service, tenant))

    # -- dead letters -----------------------------------------------------------------------

    async def dead_letters(self, *, include_redriven: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first (those already redriven are left out by default)."""
        redriven = {k for k, _ in await self.engine.kv_scan("setpiece.redriven", "", 1_000_000)}
        out: list[DeadLetter] = []
        offset = (await self.engine.start_offsets(DEAD_LETTERS))[0]
        while True:
            records = await self.engine.read(DEAD_LETTERS, 0, offset, 1000)
            if not records:
                return out
            for record in records:
                letter_id = str(record.offset)
                if letter_id in redriven and not include_redriven:
                    continue
                raw = msgspec.json.decode(record.value)
                event, text = None, raw.get("raw")
                if raw.get("event"):
                    try:
                        event = Event.from_dict(raw["event"])
                    except EventError:  # the record held what the edge refuses: listed raw
                        text = msgspec.json.encode(raw["event"]).decode()
                out.append(
                    DeadLetter(
                        id=letter_id, event=event, error=raw["error"],
                        traceback=raw["traceback"], handler=raw["handler"],
                        group=raw.get("group"), stream=raw.get("stream"),
                        attempts=raw["attempts"], time=raw["time"], raw=text,
                    )
                )
            offset = records[-1].offset + 1

    async def redrive(self, ids: Iterable[str] | None = None) -> int:
        """Send dead-lettered events back to the consumer that failed them; returns how many.

        Each goes back onto its stream aimed at that one consumer group (others ignore it), and
        is marked redriven in the same transaction.
        """
        wanted = None if ids is None else set(ids)
        letters = [
            d for d in await self.dead_letters()
            if (wanted is None or d.id in wanted) and d.event is not None and d.stream
        ]
        if not letters:
            return 0
        unit = UnitOfWork()
        for letter in letters:
            assert letter.event is not None and letter.stream is not None
            extensions = dict(letter.event.extensions or {})
            if letter.group is not None:
                extensions[TARGET_MARK] = letter.group
            event = letter.event.replace(extensions=extensions or None)
            unit.appends.append((letter.stream, event.partitionkey, encode_event(event)))
            unit.writes.append(_redriven_mark(letter.id))
        await self.engine.commit(unit)
        return len(letters)

    # -- archive replay ---------------------------------------------------------------------

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
        bus_name = bus or self.stack.default_bus
        if bus_name not in self.stack.buses:
            raise ConfigError(f"replay: the stack has no bus {bus_name!r}")
        stream = bus_stream_name(bus_name)
        t0 = start.timestamp() if isinstance(start, datetime) else float(start)
        t1 = (end.timestamp() if isinstance(end, datetime) else float(end)) if end else time.time()
        replay_name = name or f"replay-{int(time.time() * 1000)}"
        firsts = await self.engine.offsets_for_time(stream, t0)
        lasts = await self.engine.offsets_for_time(stream, t1)
        records: list[tuple[str, str | None, bytes]] = []
        for partition, (first, last) in enumerate(zip(firsts, lasts, strict=True)):
            offset = first
            while offset < last:
                batch = await self.engine.read(stream, partition, offset, min(1000, last - offset))
                if not batch:
                    break
                for record in batch:
                    if record.offset >= last:
                        break
                    event = msgspec.json.decode(record.value, type=Event)
                    extensions = dict(event.extensions or {})
                    if REPLAY_MARK in extensions:
                        continue  # replays are not replayed again
                    extensions[REPLAY_MARK] = replay_name
                    if rule is not None:
                        extensions[RULE_MARK] = rule
                    replayed = event.replace(extensions=extensions)
                    records.append((stream, replayed.partitionkey, encode_event(replayed)))
                offset = batch[-1].offset + 1
        for start_at in range(0, len(records), 1000):
            await self.engine.commit(UnitOfWork(appends=records[start_at : start_at + 1000]))
        return len(records)

    # -- workflows --------------------------------------------------------------------------

    def _workflow_runner(self) -> WorkflowRunner | None:
        """What runs the stack's durable workflows (their signal consumer and timers); none in
        workers limited to some services, like rule targets."""
        if not self.stack.workflows or self.config.services:
            return None
        from setpiece.workflows._durable import WorkflowRunner

        return WorkflowRunner(self, self._progress.set)

    # -- schedules --------------------------------------------------------------------------

    async def _prepare_schedules(self) -> None:
        if not self._schedules:
            return
        existing = {t.id for t in await self.engine.timers(SCHEDULES)}
        now = time.time()
        fresh = [
            Timer(SCHEDULES, name, next_due(handler, now))
            for name, handler in self._schedules.items()
            if name not in existing
        ]
        if fresh:
            await self.engine.commit(UnitOfWork(timers=fresh))

    async def _run_schedules(self) -> None:
        while not self._stopping:
            now = time.time()
            for timer in await self.engine.due_timers(now, 1000):
                if timer.namespace == SCHEDULES and timer.id in self._schedules:
                    await self._fire(timer, self._schedules[timer.id])
            ours = [t.due for t in await self.engine.timers(SCHEDULES) if t.id in self._schedules]
            wait = min(ours, default=now + 1.0) - time.time()
            self._timer_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), max(0.0, min(wait, 1.0)))

    async def _fire(self, timer: Timer, handler: Handler) -> None:
        scheduled = datetime.fromtimestamp(timer.due).astimezone().isoformat()
        event = Event(
            type="setpiece.schedule",
            source=f"setpiece/{handler.service}",
            id=f"{timer.id}@{timer.due:.3f}",
            data={"handler": handler.qualname, "scheduled": scheduled},
        )
        batch = Batch(self.engine)
        await deliver(
            self._handler_action(handler), event, batch,
            retry=handler.retry or DEFAULT_RETRY, label=handler.qualname, inbox=None,
            dead=lambda exc, n: batch.appends.append(
                dead_letter_record(event, exc, n, label=handler.qualname, group=None, record=None)
            ),
            deadline=self.deadline(handler),
        )
        following = Timer(SCHEDULES, timer.id, next_due(handler, max(timer.due, time.time())))
        batch.fired.append(timer)
        batch.timers.append(following)
        with contextlib.suppress(ConflictError):  # another worker fired this tick
            try:
                await self.engine.commit(batch.unit())
            except RefusedError as exc:  # its effects hold what the engine cannot store
                await self.engine.commit(UnitOfWork(
                    appends=[dead_letter_record(event, exc, 1, label=handler.qualname,
                                                group=None, record=None)],
                    fired=[timer], timers=[following],
                ))
        self._progress.set()

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

    # -- discovery and the HTTP gateway (setpiece.gateway) ----------------------------------

    async def _start_registry(self) -> None:
        from setpiece.gateway.registry import Registry

        self._registry = Registry(
            self.engine, stack=self.stack.name, member=self.config.member,
            services=[(s.name, s.version) for s in self.stack.services.values()
                      if self._wanted(s.name)],
            interval=self.config.heartbeat_interval, ttl=self.config.session_timeout,
        )
        await self._registry.start()

    @property
    def registry(self) -> Any:
        """This runtime's :class:`~setpiece.gateway.registry.Registry` (discovery)."""
        if self._registry is None:
            raise ConfigError("the runtime is not started")
        return self._registry

    async def instances(self, service: str | None = None) -> list[Any]:
        """The live instances of a service (of every service without a name), from discovery."""
        found: list[Any] = await self.registry.live(service)
        return found

    async def advertise(self, address: str | None) -> None:
        """Register the URL this runtime's gateway listens on, so other gateways route here."""
        await self.registry.advertise(address)

    def asgi(self) -> Any:
        """The HTTP gateway on this runtime, as an ASGI app (one per runtime)."""
        if self._gateway is None:
            from setpiece.gateway.app import Gateway

            self._gateway = Gateway(self.stack, runtime=self)
        return self._gateway


def _redriven_mark(letter_id: str) -> KVWrite:
    return KVWrite("setpiece.redriven", letter_id, b"1")
