"""Traces: one trace per causal chain, from the HTTP request through the bus, the services, the
events they emit and a durable workflow's tasks, with the parents the hops imply."""

from __future__ import annotations

from typing import Any

import msgspec
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from examples.product_orchestration.app import build_stack
from setpiece import Event, Observability, Service, Stack
from tests.gateway.conftest import client

Run = Any
FORM = {"customer_id": "cu-1", "email": "ada@example.com", "serial_number": "SN-1",
        "model": "Kettle K2"}


def tracer() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def traced(stack: Stack, provider: TracerProvider) -> Stack:
    return Stack(stack.name, services=list(stack.services.values()),
                 buses=list(stack.buses.values()), streams=list(stack.streams.values()),
                 workflows=list(stack.workflows.values()),
                 observe=Observability(tracing=True, tracer_provider=provider))


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, sorted(s.name for s in spans))
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def test_one_trace_from_the_http_request_through_bus_services_and_workflow(run: Run) -> None:
    provider, exporter = tracer()
    stack = traced(build_stack(), provider)
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def main() -> None:
        async with stack.start("memory") as rt, client(rt.asgi()) as c:
            body = {"specversion": "1.0", "type": "product_registered", "source": "shop",
                    "id": "e-1", "data": FORM}
            reply = await c.post("/events/default", content=msgspec.json.encode(body), headers={
                "traceparent": incoming, "content-type": "application/cloudevents+json"})
            assert reply.status_code == 202, reply.text
            await rt.drain()
            for ex in await rt.executions():
                assert (await rt.wait_execution(ex.id, timeout=30)).status == "SUCCEEDED"
            await rt.drain()

    run(main())
    spans = list(exporter.get_finished_spans())
    request = one(spans, "POST /events/{bus}")
    assert request.kind is SpanKind.SERVER
    assert f"{trace_id(request):032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert parent_of(request) == 0xb7ad6b7169203331
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202
    chain = [s for s in spans if trace_id(s) == trace_id(request)]

    send = one(chain, "send bus.default")
    assert send.kind is SpanKind.PRODUCER and parent_of(send) == span_id(request)
    start = one(chain, "process rule.default.start-registration.workflow:register-product")
    assert start.kind is SpanKind.CONSUMER and parent_of(start) == span_id(send)
    assert start.attributes is not None
    assert start.attributes["messaging.message.id"] == "e-1"
    assert start.attributes["messaging.destination.name"] == "bus.default"
    # the workflow's tasks: children of the delivery that started the execution
    award = one(chain, "task register-product.AwardPoints")
    email = one(chain, "task register-product.EmailDiscount")
    assert parent_of(award) == parent_of(email) == span_id(start)
    # the task's event to another service, and that service's emitted event to a third
    generate = one(chain, "process promotions.generate")
    assert parent_of(generate) == span_id(start)
    relay = one(chain, "process registration.relay_token")
    assert parent_of(relay) == span_id(generate)
    case = one(chain, "process support.open_case")
    assert parent_of(case) == span_id(start)
    # a batch of one delivery commits as its child
    commit = one(chain, "commit promotions.generate")
    assert parent_of(commit) == span_id(generate)


def test_emitted_events_carry_the_handler_span_and_the_trace_state(run: Run) -> None:
    provider, exporter = tracer()
    first, second = Service("first"), Service("second")
    seen: list[Event] = []

    @first.on({"type": ["a"]})
    async def relay(event: Event) -> Event:
        return Event(type="b", data={})

    @second.on({"type": ["b"]})
    async def sink(event: Event) -> None:
        seen.append(event)

    stack = Stack("s", services=[first, second],
                  observe=Observability(tracing=True, tracer_provider=provider))

    async def main() -> None:
        async with stack.start("memory") as rt:
            await rt.publish(Event(
                type="a", source="t",
                traceparent="00-11111111111111111111111111111111-2222222222222222-01",
                extensions={"tracestate": "vendor=x"}))
            await rt.drain()

    run(main())
    spans = list(exporter.get_finished_spans())
    relay_span = one(spans, "process first.relay")
    sink_span = one(spans, "process second.sink")
    assert parent_of(sink_span) == span_id(relay_span)
    assert trace_id(sink_span) == 0x11111111111111111111111111111111
    assert seen[0].traceparent == (
        f"00-{trace_id(sink_span):032x}-{span_id(sink_span):016x}-01")
    assert seen[0].extensions == {"tracestate": "vendor=x"}
    assert sink_span.context is not None
    assert sink_span.context.trace_state.to_header() == "vendor=x"


def test_publish_starts_a_trace_or_continues_the_callers(run: Run) -> None:
    provider, exporter = tracer()
    stack = Stack("s", services=[], observe=Observability(tracing=True,
                                                          tracer_provider=provider))

    async def main() -> tuple[Event, Event]:
        async with stack.start("memory") as rt:
            alone = await rt.publish(Event(type="a", source="t"))
            with provider.get_tracer("test").start_as_current_span("mine"):
                inside = await rt.publish(Event(type="a", source="t"))
            return alone, inside

    alone, inside = run(main())
    spans = list(exporter.get_finished_spans())
    mine = one(spans, "mine")
    sends = [s for s in spans if s.name == "send bus.default"]
    assert len(sends) == 2
    assert sends[0].parent is None
    assert alone.traceparent is not None
    assert alone.traceparent[:53] == f"00-{trace_id(sends[0]):032x}-{span_id(sends[0]):016x}-"
    assert parent_of(sends[1]) == span_id(mine)
    assert inside.traceparent is not None and inside.traceparent[3:35] == f"{trace_id(mine):032x}"
