"""OpenTelemetry spans for every hop, joined into one trace per causal chain.

The W3C trace context travels inside the events, in the CloudEvents distributed-tracing
extensions ``traceparent`` (an attribute of :class:`~setpiece.Event`) and ``tracestate`` (an
extension): whatever engine or process an event crosses, the span of its next hop is a child of
the span that published it.

- ``publish`` (``rt.publish``, ``publish_many``, the gateway's ``POST /events/{bus}``): a
  PRODUCER span per call for the events that carry no trace context, child of the caller's
  current span (a new trace else), whose context they all carry; and one per event that does,
  child of that context;
- each delivery attempt (a handler, a rule target: stream, bus, HTTP, workflow): a CONSUMER span,
  child of the event's ``traceparent``; the event the handler sees, and so every event it emits,
  carries this span's context; the span is the current one while the handler runs, so the
  user's own spans nest in it;
- each batch commit: an INTERNAL span, child of its one delivery, or linked to its deliveries
  when the batch holds several (a batch has no single parent);
- each HTTP request and ``ctx.call``: a SERVER span, child of the caller's ``traceparent``;
- each service task of a durable workflow: an INTERNAL span, child of the delivery that
  started the execution (an execution keeps the ``traceparent`` of the event that started it:
  its tasks, and the events they emit, continue that trace in whatever process runs them).

Span names and attributes follow the OpenTelemetry semantic conventions for messaging
(``messaging.system``, ``messaging.operation.type``, ``messaging.destination.name``, ...) and
HTTP (``http.request.method``, ``http.route``, ``http.response.status_code``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from setpiece.event import Event
from setpiece.observability import Observability
from setpiece.runtime.extension import Action
from setpiece.runtime.instrument import Instrumentation, RequestObservation, WorkObservation
from setpiece.signals import Drop

if TYPE_CHECKING:
    from setpiece.runtime.consumer import Consumer
    from setpiece.runtime.unit import Attempt

__all__ = ["Tracing", "context_of", "traceparent_of"]

SYSTEM = "setpiece"
TRACESTATE = "tracestate"  # the CloudEvents extension that carries the W3C tracestate


def traceparent_of(context: SpanContext) -> str:
    """The W3C ``traceparent`` of a span context."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def span_context(traceparent: str | None, tracestate: Any = None) -> SpanContext | None:
    """The remote span context a ``traceparent`` names (None when it names none)."""
    if not traceparent or len(traceparent) != 55:
        return None
    try:
        trace_id = int(traceparent[3:35], 16)
        span_id = int(traceparent[36:52], 16)
        flags = int(traceparent[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    state = None
    if isinstance(tracestate, str) and tracestate:
        state = TraceState.from_header([tracestate])
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags),
                       trace_state=state)


def context_of(event: Event) -> otel_context.Context | None:
    """The OpenTelemetry context an event continues (None: it starts a trace)."""
    extensions = event.extensions
    found = span_context(event.traceparent,
                         extensions.get(TRACESTATE) if extensions else None)
    if found is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(found))


def _carry(event: Event, span: Span) -> Event:
    """``event`` carrying ``span``'s context (its trace state too, as the extension)."""
    context = span.get_span_context()
    if not context.is_valid:
        return event
    traceparent = traceparent_of(context)  # well-formed: no need to check it again
    state = context.trace_state.to_header() if context.trace_state else ""
    if not state and not (event.extensions and TRACESTATE in event.extensions):
        return _replace(event, traceparent=traceparent)
    extensions = dict(event.extensions or {})
    if state:
        extensions[TRACESTATE] = state
    else:
        extensions.pop(TRACESTATE, None)
    return event.replace(traceparent=traceparent, extensions=extensions or None)


_replace = msgspec.structs.replace


class _Request(RequestObservation):
    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.token = otel_context.attach(trace.set_span_in_context(span))
        context = span.get_span_context()
        self.traceparent = traceparent_of(context) if context.is_valid else None

    def end(self, status: int, version: str | None) -> None:
        span = self.span
        span.set_attribute("http.response.status_code", status)
        if version is not None:
            span.set_attribute("setpiece.service.version", version)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        otel_context.detach(self.token)


class _Work(WorkObservation):
    __slots__ = ("span", "token")

    def __init__(self, span: Span, event: Event) -> None:
        super().__init__(_carry(event, span))
        self.span = span
        self.token = otel_context.attach(trace.set_span_in_context(span))

    def end(self, error: BaseException | None) -> None:
        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.span.end()
        otel_context.detach(self.token)


class Tracing(Instrumentation):
    """Spans for a runtime's hops (see the module docstring)."""

    def __init__(self, config: Observability, stack: str) -> None:
        provider = config.tracer_provider
        self._own: Any = None
        if config.otlp is not None:
            provider = self._own = _otlp_provider(config.otlp, config.service_name or stack)
        if provider is None:
            provider = trace.get_tracer_provider()  # the application's, or OTel's no-op
        self.provider = provider
        self.tracer = provider.get_tracer("setpiece")
        self._batches: dict[int, list[SpanContext]] = {}  # per consumer: its batch's spans

    def flush(self) -> None:
        if self._own is not None:
            self._own.force_flush()
            self._own.shutdown()

    # -- deliveries -------------------------------------------------------------------------

    def wrap_action(self, consumer: Consumer, action: Action) -> Action:
        tracer = self.tracer
        name = f"process {consumer.group}"
        stream = consumer.stream
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": stream,
            "messaging.consumer.group.name": consumer.group,
        }
        batch = self._batches.setdefault(id(consumer), [])
        attach, detach, in_context = otel_context.attach, otel_context.detach, \
            trace.set_span_in_context

        async def traced(event: Event, attempt: Attempt, number: int) -> None:
            these: dict[str, Any] = {**attributes, "messaging.message.id": event.id}
            if number > 1:
                these["setpiece.attempt"] = number
            span = tracer.start_span(name, context_of(event), SpanKind.CONSUMER, these)
            token = attach(in_context(span))
            try:
                await action(_carry(event, span), attempt, number)
            except Drop:
                span.set_attribute("setpiece.dropped", True)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                detach(token)
                span.end()
                batch.append(span.get_span_context())

        return traced

    def committed(self, consumer: Consumer, partition: int, deliveries: int) -> None:
        spans = self._batches.get(id(consumer))
        if not spans:
            return
        contexts = list(spans)
        spans.clear()  # the list the wrapped action appends to
        name = f"commit {consumer.group}"
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "settle",
            "messaging.destination.name": consumer.stream,
            "messaging.destination.partition.id": str(partition),
            "messaging.consumer.group.name": consumer.group,
            "messaging.batch.message_count": deliveries,
        }
        if len(contexts) == 1:
            parent = trace.set_span_in_context(NonRecordingSpan(contexts[0]))
            span = self.tracer.start_span(name, parent, SpanKind.INTERNAL, attributes)
        else:
            span = self.tracer.start_span(name, otel_context.Context(), SpanKind.INTERNAL,
                                          attributes, links=[Link(c) for c in contexts])
        span.end()

    def dead_lettered(self, consumer: Consumer, event: Event | None, attempts: int) -> None:
        current = trace.get_current_span()
        if current.is_recording():
            current.add_event("setpiece.dead_letter", {"setpiece.attempts": attempts})

    # -- publishing -------------------------------------------------------------------------

    def publishing(self, events: list[Event], target: str) -> list[Event]:
        """One PRODUCER span per call for the events that carry no trace context (they all
        carry its context: the semantic conventions' batch send), and one per event that
        does (a child of that event's context)."""
        tracer = self.tracer
        name = f"send {target}"
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": target,
        }
        fresh = [event for event in events if event.traceparent is None]
        batch: Span | None = None
        if fresh:
            these = dict(attributes)
            if len(fresh) > 1:
                these["messaging.batch.message_count"] = len(fresh)
            else:
                these["messaging.message.id"] = fresh[0].id
            batch = tracer.start_span(name, otel_context.get_current(), SpanKind.PRODUCER,
                                      these)
        out: list[Event] = []
        for event in events:
            if event.traceparent is None:
                assert batch is not None
                out.append(_carry(event, batch))
                continue
            span = tracer.start_span(name, context_of(event), SpanKind.PRODUCER,
                                     {**attributes, "messaging.message.id": event.id})
            out.append(_carry(event, span))
            span.end()
        if batch is not None:
            batch.end()
        return out

    # -- extensions' work (workflow tasks) --------------------------------------------------

    def work(self, name: str, event: Event, attributes: dict[str, str]) -> WorkObservation:
        parent = context_of(event) or otel_context.get_current()
        span = self.tracer.start_span(name, parent, SpanKind.INTERNAL, attributes)
        return _Work(span, event)

    # -- HTTP -------------------------------------------------------------------------------

    def request(
        self, method: str, route: str, service: str | None, traceparent: str | None
    ) -> RequestObservation:
        remote = span_context(traceparent)
        parent = (trace.set_span_in_context(NonRecordingSpan(remote))
                  if remote is not None else otel_context.get_current())
        attributes: dict[str, Any] = {"http.request.method": method, "http.route": route}
        if service:
            attributes["setpiece.service"] = service
        span = self.tracer.start_span(f"{method} {route}", parent, SpanKind.SERVER, attributes,
                                      start_time=time.time_ns())
        return _Request(span)


def _otlp_provider(url: str, service: str) -> Any:
    """A tracer provider of this runtime's own, exporting over OTLP/HTTP to ``url``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    endpoint = url if url.rstrip("/").endswith("/v1/traces") else url.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider
