"""The orchestration example deployed as two stacks, each run by its own worker process, with
every span written to the file ``$SETPIECE_TEST_SPANS`` names (one JSON line per span).

``back`` runs the rule and the workflow with the loyalty, emails and support services;
``front`` runs promotions and registration. A registration's trace crosses both processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from examples.product_orchestration import app
from setpiece import Observability, Stack


class FileExporter(SpanExporter):
    """Appends each span (name, ids, parent, pid) as one JSON line to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            assert span.context is not None
            lines.append(json.dumps({
                "name": span.name, "trace": f"{span.context.trace_id:032x}",
                "span": f"{span.context.span_id:016x}",
                "parent": f"{span.parent.span_id:016x}" if span.parent else None,
                "pid": os.getpid(),
            }) + "\n")
        with open(self.path, "a") as out:  # one write per batch: whole lines
            out.write("".join(lines))
        return SpanExportResult.SUCCESS


def _observe() -> Observability:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["SETPIECE_TEST_SPANS"])))
    return Observability(metrics=False, tracing=True, tracer_provider=provider)


def back() -> Stack:
    full = app.build_stack()
    return Stack("back", services=[app.loyalty, app.emails, app.support],
                 buses=list(full.buses.values()), workflows=list(full.workflows.values()),
                 observe=_observe())


def front() -> Stack:
    return Stack("front", services=[app.promotions, app.registration], observe=_observe())
