"""The instrumentation point: what the runtime and the gateway tell an observer.

The runtime knows nothing of metrics or tracing. An extension (``setpiece.observe``) installs an
:class:`Instrumentation` with ``Runtime.instrument``; with none installed, each place below costs
one attribute check. Every method of the base class does nothing, so an observer overrides only
what it needs.

- ``wrap_action``: once per consumer when the runtime starts, around the action that runs each
  delivery attempt (the handler, the rule target): time it, count it, open a span;
- ``dead_lettered``: a consumer dead-letters a record;
- ``committed``: a consumer committed a batch (``deliveries`` events);
- ``publishing``: events about to be published from outside any handler (``rt.publish``);
- ``request``: an HTTP request the gateway serves; the :class:`RequestObservation` it returns
  is told how it ended;
- ``breaker``: a circuit breaker of the gateway changed state;
- ``execution_ended``: a durable workflow execution ended with a status;
- ``work``: a unit of work an extension runs for an event (a workflow's task): the
  :class:`WorkObservation` it returns gives the event to run it with (carrying the work's trace
  context) and is told how it ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from setpiece.event import Event
from setpiece.runtime.extension import Action

if TYPE_CHECKING:
    from setpiece.runtime.consumer import Consumer

__all__ = ["Instrumentation", "RequestObservation", "WorkObservation"]


class RequestObservation:
    """One HTTP request being served. ``traceparent``: the context its children continue
    (None: the gateway's own)."""

    traceparent: str | None = None

    def end(self, status: int, version: str | None) -> None:
        """The request ended with ``status``, served by ``version`` of its service if known."""


class WorkObservation:
    """One unit of work being run for ``event`` (which carries the work's trace context)."""

    def __init__(self, event: Event) -> None:
        self.event = event

    def end(self, error: BaseException | None) -> None:
        """The work ended, failing with ``error`` or not."""


class Instrumentation:
    """An observer of a runtime. See the module docstring; the defaults do nothing."""

    def wrap_action(self, consumer: Consumer, action: Action) -> Action:
        return action

    def dead_lettered(self, consumer: Consumer, event: Event | None, attempts: int) -> None:
        return None

    def committed(self, consumer: Consumer, partition: int, deliveries: int) -> None:
        return None

    def publishing(self, events: list[Event], target: str) -> list[Event]:
        return events

    def request(
        self, method: str, route: str, service: str | None, traceparent: str | None
    ) -> RequestObservation | None:
        return None

    def breaker(self, service: str, instance: str, state: str) -> None:
        return None

    def execution_ended(self, workflow: str, status: str) -> None:
        return None

    def work(
        self, name: str, event: Event, attributes: dict[str, str]
    ) -> WorkObservation | None:
        return None
