"""The last traces' spans, kept in memory for the live map's waterfalls."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

__all__ = ["RecentSpans"]


class RecentSpans(SpanProcessor):
    """A span processor that keeps the last traces' spans, for the map's waterfalls."""

    def __init__(self, traces: int = 50) -> None:
        self.traces: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.limit = traces

    def on_end(self, span: Any) -> None:
        context = span.context
        spans = self.traces.get(context.trace_id)
        if spans is None:
            spans = self.traces[context.trace_id] = []
            while len(self.traces) > self.limit:
                self.traces.popitem(last=False)
        if len(spans) < 200:
            spans.append({
                "name": span.name, "span": f"{context.span_id:016x}",
                "parent": f"{span.parent.span_id:016x}" if span.parent else None,
                "start": span.start_time, "end": span.end_time,
                "error": not span.status.is_ok if span.status is not None else False,
            })

    def last(self, names: set[str], count: int = 3) -> list[dict[str, Any]]:
        """The last ``count`` traces holding a span named one of ``names``, as waterfalls."""
        out = []
        for trace_id, spans in reversed(self.traces.items()):
            if any(s["name"] in names for s in spans):
                start = min(s["start"] for s in spans)
                out.append({"trace": f"{trace_id:032x}", "spans": [
                    {**s, "offset_ms": (s["start"] - start) / 1e6,
                     "duration_ms": ((s["end"] or s["start"]) - s["start"]) / 1e6}
                    for s in sorted(spans, key=lambda s: s["start"])]})
                if len(out) == count:
                    break
        return out
