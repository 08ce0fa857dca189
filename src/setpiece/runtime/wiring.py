"""Which consumers a runtime runs, and how each is put together.

One consumer group per event or stream handler (a handler with a canary or shadow version gets
a :class:`~setpiece.runtime.rollouts.Router` as its action), one per rule target (its kind's
action: a stream, a bus, an HTTP endpoint, or what an extension registered), and the schedules
(fired by the timer dispatcher, not consumed). Workers limited to some services
(``RuntimeConfig.services``) run only those services' handlers, and no rule targets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from setpiece.bus import Bus, Rule, bus_stream_name
from setpiece.errors import ConfigError
from setpiece.policy import RetryPolicy
from setpiece.runtime.actions import handler_action
from setpiece.runtime.consumer import Consumer
from setpiece.runtime.rollouts import Router
from setpiece.runtime.shadow import shadow_emit, shadow_store
from setpiece.runtime.timeouts import LoopWatch
from setpiece.service import Handler

if TYPE_CHECKING:
    from setpiece.runtime.runtime import Runtime
    from setpiece.stack import Stack

__all__ = ["build_consumers", "handler_consumer", "loop_watch", "target_consumer"]

DEFAULT_RETRY = RetryPolicy()


def build_consumers(rt: Runtime) -> list[Consumer]:
    """The runtime's consumers; its schedules are handed to ``rt._schedules``."""
    consumers: list[Consumer] = []
    schedules: dict[str, Handler] = {}
    for service in rt.stack.services.values():
        if not rt.wants(service.name):
            continue
        for handler in service.handlers:
            if handler.kind == "schedule":
                schedules[handler.qualname] = handler
                continue
            if handler.kind == "task":  # called by workflows, subscribed to nothing
                continue
            consumers.append(handler_consumer(rt, handler))
    rt._schedules.handlers = schedules
    if rt.config.services:
        return consumers  # rule targets (forwarders) run in workers that run every service
    for bus in rt.stack.buses.values():
        for rule in bus.rules:
            for index, target in enumerate(rule.targets):
                consumers.append(target_consumer(rt, bus, rule, index, target))
    return consumers


def handler_consumer(rt: Runtime, handler: Handler) -> Consumer:
    """The consumer group of an event or stream handler."""
    if handler.kind == "event":
        assert handler.bus is not None and handler.compiled is not None
        stream = bus_stream_name(handler.bus)
        accept = handler.compiled
        start_at_end = True
    else:
        assert handler.stream is not None
        stream, accept, start_at_end = handler.stream, None, False
    action, router = rt._handler_action(handler), None
    rollout = rt.stack.rollouts.get(handler.service)
    candidate = None if rollout is None else rollout.handler(handler.name)
    if rollout is not None and candidate is not None:
        shadow = None
        if rollout.mode == "shadow":  # no context services: nothing real may happen
            emit = shadow_emit(handler.service, rt._target_stream, rt.config.max_event_bytes)
            shadow = handler_action(candidate, emit, {}, shadow_store(handler.service))
        router = Router(rt.engine, rollout, versions=rt.versions, group=handler.qualname,
                        primary=action, candidate=rt._handler_action(candidate),
                        shadow=shadow, on_change=rt._progress.set)
        action = router.action
    return Consumer(
        engine=rt.engine,
        clock=rt.clock,
        config=rt.config,
        group=handler.qualname,
        stream=stream,
        label=handler.qualname,
        action=action,
        retry=handler.retry or DEFAULT_RETRY,
        concurrency=handler.concurrency or rt.config.concurrency,
        accept=accept,
        reader=rt.reader(stream),
        rule=handler.qualname,
        start_at_end=start_at_end,
        on_commit=rt._progress.set,
        deadline=rt.deadline(handler),
        router=router,
    )


def target_consumer(rt: Runtime, bus: Bus, rule: Rule, index: int, target: Any) -> Consumer:
    """The consumer group of one target of a bus rule."""
    make = rt._target_kinds.get(type(target))
    if make is None:
        raise ConfigError(
            f"rule {bus.name}/{rule.name}: nothing in this runtime delivers to a "
            f"{type(target).__name__} target"
        )
    name, action = make(bus, rule, index, target)
    group = f"rule.{bus.name}.{rule.name}.{name}"
    return Consumer(
        engine=rt.engine,
        clock=rt.clock,
        config=rt.config,
        group=group,
        stream=bus_stream_name(bus.name),
        label=f"rule {bus.name}/{rule.name} -> {name}",
        action=action,
        retry=rule.retry or DEFAULT_RETRY,
        concurrency=rt.config.concurrency,
        accept=rule.compiled,
        reader=rt.reader(bus_stream_name(bus.name)),
        rule=rule.name,
        start_at_end=True,
        on_commit=rt._progress.set,
    )


def loop_watch(stack: Stack) -> LoopWatch:
    """Names the async def handler or route that blocks the event loop, if one does."""
    code: dict[Any, str] = {}
    for rollout in stack.rollouts.values():  # candidates first: primaries win a tie
        for handler in rollout.candidate.handlers:
            if handler.is_async:
                code[getattr(handler.fn, "__code__", None)] = (
                    f"handler {handler.qualname} (version {rollout.version})")
    for service in stack.services.values():
        for handler in service.handlers:
            if handler.is_async:
                code[getattr(handler.fn, "__code__", None)] = f"handler {handler.qualname}"
        for route in service.routes:
            code[getattr(route.fn, "__code__", None)] = f"route {service.name}.{route.name}"
    code.pop(None, None)
    return LoopWatch(code)
