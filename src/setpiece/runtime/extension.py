"""The extension point: how the parts above the runtime plug into it.

The runtime runs consumers, timers and background loops, and knows nothing of the parts built
on it. The HTTP gateway, durable workflows and every later part (views, observability, schemas,
event sourcing, ...) are :class:`Extension` s: when the runtime starts, each one is attached and
contributes, through the runtime's ``add_*`` methods,

- consumers (``add_consumer``) and background loops (``add_task``), supervised like the
  runtime's own: a crash is logged at once, reported by ``health()`` and restarted;
- rule-target kinds (``add_target_kind``): how a rule delivers to a target of a given type;
- context services (``add_context_service``): objects a handler's ``ctx`` reaches by name, made
  per attempt so that what they do commits with the delivery (task tokens);
- timer namespaces (``add_timer_handler``): the runtime's one timer dispatcher fires due timers
  of that namespace through the extension;
- HTTP endpoints (``add_endpoint``): routes the gateway serves beside the services' own;
- event checks (``add_event_check``): called on every event before it is stored, from
  ``publish``/``publish_many`` (and so HTTP ingress) and from handlers' emitted events; one that
  raises (an :class:`~setpiece.errors.EventError`) stops the publish and nothing is stored.

Which extensions a stack gets is decided above the edges (``setpiece._assembly``), never here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from setpiece.engine.contract import Timer

if TYPE_CHECKING:
    from setpiece.bus import Bus, Rule
    from setpiece.event import Event
    from setpiece.runtime.runtime import Runtime
    from setpiece.runtime.unit import Attempt

__all__ = [
    "Action", "EndpointCall", "EventCheck", "Extension", "HttpEndpoint", "TargetKind",
    "TimerHandler",
]

#: What a consumer does with one accepted event: its effects go into the attempt.
Action = Callable[["Event", "Attempt", int], Awaitable[None]]

#: Builds the delivery of one rule target: ``(bus, rule, index, target) -> (name, action)``;
#: ``name`` names the target in its consumer group (``rule.<bus>.<rule>.<name>``).
TargetKind = Callable[["Bus", "Rule", int, Any], tuple[str, Action]]

#: Checks one event on its way out: ``(event, bus, stream)``, exactly one of bus and stream
#: named; raises (an EventError) to refuse it.
EventCheck = Callable[["Event", "str | None", "str | None"], None]

#: Fires due timers of one namespace (each commits its own unit of work).
TimerHandler = Callable[[list[Timer]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EndpointCall:
    """One request to an :class:`HttpEndpoint`, already authenticated by the gateway."""

    params: Mapping[str, str]
    body: bytes
    tenant: str | None


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    """An HTTP route an extension adds to the gateway (``path`` may hold ``{name}`` segments).

    ``scope`` is the OAuth2 scope a caller's token needs when the stack has auth. ``handle``
    answers with ``(status, JSON value)``.
    """

    method: str
    path: str
    scope: str
    handle: Callable[[EndpointCall], Awaitable[tuple[int, Any]]]
    summary: str = ""


class Extension(Protocol):
    """A part that runs inside a runtime."""

    #: How ``rt.extension(name)`` finds it; one extension per name and runtime.
    name: str

    async def attach(self, runtime: Runtime) -> None:
        """Contribute consumers, tasks, target kinds, context services, timers and endpoints.

        Called once, when the runtime starts, after its streams exist and before its consumers
        are built."""

    async def stop(self) -> None:
        """Called once when the runtime stops, before its consumers are waited for."""
