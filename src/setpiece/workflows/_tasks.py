"""What a Task state calls: a service handler of the stack, an HTTP endpoint, or a bus.

:class:`TaskCalls` makes the calls of one delivery of the durable driver. A service handler runs
in a nested attempt: it reads through the workflow step's pending writes, and its store writes
and published events join the step's unit of work only if it returns, so they commit exactly
once, with the step. HTTP calls are at least once. Events go out with the step. An execution
started by an event with a tenant keeps it: its handlers get that tenant's store, as an event
handler of that event would, and the events its tasks send carry it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.bus import bus_stream_name
from setpiece.errors import TaskFailed
from setpiece.event import Event
from setpiece.runtime.outgoing import encode_checked, prepare
from setpiece.runtime.scope import invoke_handler
from setpiece.runtime.unit import Attempt
from setpiece.workflows._errors import TASK_FAILED
from setpiece.workflows.workflow import Resource

if TYPE_CHECKING:
    from setpiece.workflows._runner import WorkflowRunner

__all__ = ["TaskCalls"]


class _Nested(Attempt):
    """A task handler's attempt inside the workflow's: it reads through the workflow's pending
    writes, and its own effects join them only if the handler succeeds."""

    __slots__ = ("_parent",)

    def __init__(self, parent: Attempt) -> None:
        super().__init__(parent._batch)
        self._parent = parent

    async def get(self, key: tuple[str, str]) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return await self._parent.get(key)

    def fold(self) -> None:
        parent = self._parent
        parent.writes.update(self.writes)
        parent.appends.extend(self.appends)
        parent.events.extend(self.events)  # event-sourced aggregates' commands (ctx.aggregate)
        parent.timers.extend(self.timers)
        parent.cancel_timers.extend(self.cancel_timers)


class TaskCalls:
    """The task calls of one delivery, for one execution."""

    def __init__(
        self,
        runner: WorkflowRunner,
        attempt: Attempt,
        workflow: str,
        correlation: str,
        tenant: str | None = None,
    ) -> None:
        self.runner = runner
        self.attempt = attempt
        self.workflow = workflow
        self.correlation = correlation
        self.tenant = tenant

    def event(self, state: str, type_: str, data: Any, source: str | None = None) -> Event:
        """An event a task sends: from ``workflow.<name>``, about the state, correlated, for
        the execution's tenant."""
        return Event(type=type_, source=source or f"workflow.{self.workflow}", data=data,
                     subject=state, correlationid=self.correlation, tenant=self.tenant)

    async def service(self, state: str, res: Resource, payload: Any, number: int) -> Any:
        """Call a handler of the stack; its effects join the step only if it succeeds."""
        service, name = res.service
        handler = self.runner.handler(service, name)
        if handler is None:
            raise TaskFailed(TASK_FAILED, f"the stack has no handler {service}.{name}")
        event = self.event(state, "setpiece.workflow.task", payload)
        nested = _Nested(self.attempt)
        scope = self.runner.rt.scope(nested, service=service, cause=event, number=number)
        # past the handler's timeout: HandlerTimeout, a TimeoutError: the task's States.Timeout
        value = await self.runner.rt.deadline(handler).run(
            None, invoke_handler, handler, event, scope.context(name)
        )
        nested.fold()
        return value.data if isinstance(value, Event) else value

    async def http(self, res: Resource, payload: Any, timeout: float | None) -> Any:
        """An HTTP call (at least once); a non-2xx answer is ``States.Http.StatusCode.<n>``."""
        client = self.runner.rt.http_client()
        body = None if res.method in ("GET", "HEAD", "DELETE") else payload
        response = await client.request(res.method, res.target, json=body,
                                        timeout=timeout or 60.0)
        if not 200 <= response.status_code < 300:
            raise TaskFailed(f"States.Http.StatusCode.{response.status_code}",
                             response.text[:2000])
        if not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            return response.text

    def put_events(self, state: str, res: Resource, payload: Any) -> Any:
        """Put the task's event(s) on a bus (``event:<type>`` or ``events:putEvents``)."""
        events: list[tuple[Event, str | None]]
        if res.kind == "event":
            events = [(self.event(state, res.target, payload), None)]
        else:
            entries = payload.get("Entries") if isinstance(payload, dict) else None
            if not isinstance(entries, list) or not entries:
                raise TaskFailed(TASK_FAILED, "putEvents needs Parameters.Entries: a list")
            events = []
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or not isinstance(entry.get("DetailType"), str):
                    raise TaskFailed(TASK_FAILED, f"Entries[{i}].DetailType: a string is needed")
                bus_field = entry.get("EventBusName")
                bus = bus_field.rsplit("/", 1)[-1] if isinstance(bus_field, str) else None
                events.append((self.event(state, entry["DetailType"], entry.get("Detail"),
                                               entry.get("Source")), bus))
        ids = []
        for out, bus in events:
            name = bus or self.runner.stack.default_bus
            if name not in self.runner.stack.buses:
                raise TaskFailed(TASK_FAILED, f"the stack has no bus {name!r}")
            self.attempt.emit(*self._encoded(out, name))
            ids.append(out.id)
        if res.kind == "event":
            return {"EventId": ids[0]}
        return {"Entries": [{"EventId": i} for i in ids], "FailedEntryCount": 0}

    def _encoded(self, out: Event, bus: str) -> tuple[str, str | None, bytes]:
        ready = prepare(out, cause=None, service=None)
        return (bus_stream_name(bus), ready.partitionkey,
                encode_checked(ready, self.runner.rt.config.max_event_bytes))
