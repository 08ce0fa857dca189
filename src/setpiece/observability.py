"""How a stack is observed: metrics and traces, declared as plain data.

``Stack(..., observe=Observability())`` turns observability on; :mod:`setpiece.observe` (the
``otel`` extra: OpenTelemetry and prometheus_client) does the work, and nothing of it is
imported while a stack leaves ``observe`` unset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from setpiece.errors import ConfigError

__all__ = ["Observability"]


@dataclass(frozen=True, slots=True)
class Observability:
    """What a runtime records about itself.

    * ``metrics`` — Prometheus metrics (``await rt.metrics()``, ``/metrics`` on the gateway).
    * ``tracing`` — OpenTelemetry spans for every hop, with the W3C trace context carried in
      the events' ``traceparent`` (and ``tracestate``) extensions.
    * ``tracer_provider`` — the ``TracerProvider`` spans go to (default: OpenTelemetry's global
      one, the application's own if it set one).
    * ``otlp`` — an OTLP/HTTP endpoint (``http://collector:4318``) to export spans to, with a
      provider of this runtime's own (``tracer_provider`` then must be unset).
    * ``service_name`` — the ``service.name`` resource of that provider (default: the stack's).
    """

    metrics: bool = True
    tracing: bool = False
    tracer_provider: Any = None
    otlp: str | None = None
    service_name: str | None = None

    def __post_init__(self) -> None:
        if self.otlp is not None and self.tracer_provider is not None:
            raise ConfigError("Observability: give otlp or tracer_provider, not both")
        if self.otlp is not None and not self.otlp.startswith(("http://", "https://")):
            raise ConfigError(f"Observability.otlp: {self.otlp!r} is not an http(s) URL")
        if (self.otlp is not None or self.tracer_provider is not None) and not self.tracing:
            raise ConfigError("Observability: otlp and tracer_provider need tracing=True")
