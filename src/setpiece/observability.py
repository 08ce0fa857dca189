"""How a stack is observed: metrics and traces, declared as plain data.

``Stack(..., observe=Observability())`` turns observability on; :mod:`setpiece.observe` (the
``otel`` extra: OpenTelemetry and prometheus_client) does the work, and nothing of it is
imported while a stack leaves ``observe`` unset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from setpiece.errors import ConfigError

__all__ = ["SLO", "Observability"]


@dataclass(frozen=True, slots=True)
class SLO:
    """A service level objective for one handler or route.

    * ``objective`` — the fraction of good attempts wanted over ``window`` (0.999: three nines).
    * ``latency`` — seconds: an attempt that succeeds slower than this is bad too (None: only
      failures are bad).
    * ``window`` — seconds the objective (and so the error budget) spans; 28 days by default.

    An attempt is good when it succeeds (a ``Drop`` succeeds) within ``latency``; for a route,
    a request is bad when it answers 5xx or too slowly.
    """

    objective: float = 0.999
    latency: float | None = None
    window: float = 28 * 86400.0

    def __post_init__(self) -> None:
        if not 0 < self.objective < 1:
            raise ConfigError(f"SLO.objective: must be between 0 and 1, got {self.objective}")
        if self.latency is not None and not (self.latency > 0 and math.isfinite(self.latency)):
            raise ConfigError(f"SLO.latency: must be positive seconds, got {self.latency}")
        if not (self.window >= 3600 and math.isfinite(self.window)):
            raise ConfigError(f"SLO.window: must be at least 3600 seconds, got {self.window}")

    @property
    def budget(self) -> float:
        """The error budget: the fraction of attempts that may be bad (1 - objective)."""
        return 1.0 - self.objective


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
    * ``slos`` — :class:`SLO` s by what they cover: a handler (``"orders.place"``) or a route
      (``"GET /orders/{id}"``). Their counts are kept in the engine, so every worker counts.
    * ``slo_interval`` — seconds between a worker's flushes of its counts to the engine and its
      checks of the burn-rate alerts (on the runtime's clock).
    """

    metrics: bool = True
    tracing: bool = False
    tracer_provider: Any = None
    otlp: str | None = None
    service_name: str | None = None
    slos: Mapping[str, SLO] = field(default_factory=dict)
    slo_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.otlp is not None and self.tracer_provider is not None:
            raise ConfigError("Observability: give otlp or tracer_provider, not both")
        if self.otlp is not None and not self.otlp.startswith(("http://", "https://")):
            raise ConfigError(f"Observability.otlp: {self.otlp!r} is not an http(s) URL")
        if (self.otlp is not None or self.tracer_provider is not None) and not self.tracing:
            raise ConfigError("Observability: otlp and tracer_provider need tracing=True")
        for name, slo in dict(self.slos).items():
            if not isinstance(name, str) or not isinstance(slo, SLO):
                raise ConfigError(f"Observability.slos[{name!r}]: expected a name and an SLO")
        if not (self.slo_interval > 0 and math.isfinite(self.slo_interval)):
            raise ConfigError(
                f"Observability.slo_interval: must be positive seconds, got {self.slo_interval}")
