"""What consumers do with an accepted event: run a handler, forward to a stream or a bus, or
POST to an HTTP endpoint. Each is an :data:`~setpiece.runtime.extension.Action`; the rule-target
kinds here are the runtime's own (extensions add theirs, such as workflows)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.bus import Bus, HttpTarget, Rule, bus_stream_name
from setpiece.context import Context, ServiceStore
from setpiece.errors import HandlerError
from setpiece.event import Event, encode_event
from setpiece.runtime.extension import Action
from setpiece.runtime.scope import ContextService, Emit, Scope, invoke_handler
from setpiece.runtime.unit import Attempt
from setpiece.service import Handler
from setpiece.stream import Stream

if TYPE_CHECKING:
    from setpiece.patterns import InputTransformer

__all__ = ["handler_action", "results", "stream_target", "transformed"]


def transformed(transform: InputTransformer, event: Event, rule_name: str) -> Event:
    """The event with its data replaced by the transformer's output (JSON if it parses)."""
    text = transform.apply(event.pattern_view(), rule_name=rule_name)
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        data = text  # a plain-text template
    return event.replace(data=data)


def results(value: Any, where: str) -> Sequence[Event]:
    """A handler's return value as the events it emits (HandlerError if it is something else)."""
    if value is None:
        return ()
    if isinstance(value, Event):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, Event) for v in value):
        return value
    raise HandlerError(
        f"{where} returned {type(value).__name__}; return an Event, a list of Events, or None"
    )


def handler_action(
    handler: Handler,
    emit: Emit,
    services: Mapping[str, ContextService],
    store: Callable[[Attempt, Event], ServiceStore] | None = None,
) -> Action:
    """Run ``handler`` in the scope of each delivery; what it returns is emitted.

    ``store``: makes the store each attempt sees (default: the service's own)."""
    service = handler.service
    transform = handler.transform
    rule_name = handler.qualname
    name = handler.name
    where = f"handler {handler.qualname}"
    # The common case, called without invoke_handler's dispatch: an async handler of events.
    fn = handler.fn if handler.is_async and handler.kind != "schedule" else None
    adapt = handler.adapt
    wants_ctx = handler.wants_ctx

    async def action(event: Event, attempt: Attempt, number: int) -> None:
        if transform is not None:
            event = transformed(transform, event, rule_name)
        scope = Scope(attempt, service=service, cause=event, number=number, emit=emit,
                      services=services, store=None if store is None else store(attempt, event))
        ctx = Context(scope, name)
        if fn is None:
            result = await invoke_handler(handler, event, ctx)
        elif wants_ctx:
            result = await fn(adapt(event), ctx)
        else:
            result = await fn(adapt(event))
        if result is None:
            return
        if isinstance(result, Event):
            emit(attempt, result, None, None, cause=event, service=service)
            return
        for out in results(result, where):
            emit(attempt, out, None, None, cause=event, service=service)

    return action


def forward_action(rule: Rule, stream: str) -> Action:
    """Append each event (transformed, if the rule says so) to ``stream``."""
    transform, rule_name = rule.transform, rule.name

    async def action(event: Event, attempt: Attempt, number: int) -> None:
        if transform is not None:
            event = transformed(transform, event, rule_name)
        attempt.emit(stream, event.partitionkey, encode_event(event))

    return action


def stream_target(bus: Bus, rule: Rule, index: int, target: Any) -> tuple[str, Action]:
    """The rule-target kind of a :class:`~setpiece.Stream`."""
    assert isinstance(target, Stream)
    return f"stream:{target.name}", forward_action(rule, target.name)


def bus_target(bus: Bus, rule: Rule, index: int, target: Any) -> tuple[str, Action]:
    """The rule-target kind of another :class:`~setpiece.Bus`."""
    assert isinstance(target, Bus)
    return f"bus:{target.name}", forward_action(rule, bus_stream_name(target.name))


def http_target(client: Callable[[], Any]) -> Callable[[Bus, Rule, int, Any], tuple[str, Action]]:
    """The rule-target kind of an :class:`~setpiece.HttpTarget`: POST the event as a
    structured CloudEvent; anything but a 2xx is a failure (retried, then dead-lettered)."""

    def make(bus: Bus, rule: Rule, index: int, target: Any) -> tuple[str, Action]:
        assert isinstance(target, HttpTarget)
        transform, rule_name = rule.transform, rule.name

        async def action(event: Event, attempt: Attempt, number: int) -> None:
            if transform is not None:
                event = transformed(transform, event, rule_name)
            headers = {"content-type": "application/cloudevents+json", **target.headers}
            response = await client().post(
                target.url, content=event.to_json(), headers=headers, timeout=target.timeout
            )
            if not 200 <= response.status_code < 300:
                raise HandlerError(f"HTTP {response.status_code} from {target.url}")

        return f"http:{index}", action

    return make
