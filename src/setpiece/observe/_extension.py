"""The observability extension: installs metrics and tracing in a runtime, serves ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from setpiece.errors import ConfigError
from setpiece.observability import Observability
from setpiece.runtime.extension import EndpointCall, HttpEndpoint, RawBody
from setpiece.runtime.instrument import Instrumentation

if TYPE_CHECKING:
    from setpiece.observe._metrics import Metrics
    from setpiece.observe._objectives import Objectives
    from setpiece.observe._recent import RecentSpans
    from setpiece.observe._slo import SLOStatus
    from setpiece.observe._tracing import Tracing
    from setpiece.runtime.runtime import Runtime

__all__ = ["EXTENSION", "OBSERVE_SCOPE", "Observe"]

EXTENSION = "observe"
#: The OAuth2 scope ``/metrics`` needs when the stack has auth.
OBSERVE_SCOPE = "setpiece:observe"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _missing(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"observability needs the otel extra ({exc.name} is missing): "
        "pip install 'setpiece[otel]'"
    )


class Observe:
    """Metrics and traces of one runtime, as its ``observe`` extension."""

    name = EXTENSION

    def __init__(self, config: Observability) -> None:
        self.config = config
        self.metrics: Metrics | None = None
        self.tracing: Tracing | None = None
        self.objectives: Objectives | None = None
        self.recent_spans: RecentSpans | None = None
        self._runtime: Runtime | None = None

    async def attach(self, runtime: Runtime) -> None:
        self._runtime = runtime
        parts: list[Instrumentation] = []
        try:
            if self.config.tracing:
                from setpiece.observe._tracing import Tracing

                self.tracing = Tracing(self.config, runtime.stack.name)
                parts.append(self.tracing)
            if self.config.metrics:
                from setpiece.observe._metrics import Metrics

                self.metrics = Metrics()
                self.metrics.bind(runtime)
                parts.append(self.metrics)
        except ImportError as exc:
            raise _missing(exc) from None
        if self.config.slos:
            from setpiece.observe._objectives import Objectives

            self.objectives = Objectives(runtime, self.config.slos, self.config.slo_interval)
            parts.append(self.objectives)
            runtime.add_task("slo", self.objectives.run)
        if parts:
            runtime.instrument(parts[0] if len(parts) == 1 else _Chain(parts))
        if self.metrics is not None:
            runtime.add_endpoint(HttpEndpoint(
                "GET", "/metrics", OBSERVE_SCOPE, self._serve_metrics,
                summary="The runtime's metrics in the Prometheus text format",
            ))
        from setpiece.observe._map import endpoints

        if self.tracing is not None and hasattr(self.tracing.provider, "add_span_processor"):
            from setpiece.observe._recent import RecentSpans

            self.recent_spans = RecentSpans()  # the map's waterfalls of the last traces
            self.tracing.provider.add_span_processor(self.recent_spans)
        for endpoint in endpoints(self, runtime):
            runtime.add_endpoint(endpoint)

    async def stop(self) -> None:
        if self.objectives is not None:
            self.objectives.stopping.set()
        if self.tracing is not None:
            self.tracing.flush()

    async def slo_status(self) -> list[SLOStatus]:
        if self.objectives is None or self._runtime is None:
            raise ConfigError("this stack declares no SLO: Observability(slos={...})")
        return await self.objectives.status(self._runtime.clock.time())

    async def metrics_text(self) -> str:
        if self.metrics is None:
            raise ConfigError("metrics are off: Stack(observe=Observability(metrics=True))")
        return await self.metrics.text()

    async def _serve_metrics(self, call: EndpointCall) -> tuple[int, Any]:
        text = await self.metrics_text()
        return 200, RawBody(PROMETHEUS_TEXT, text.encode())


class _Chain(Instrumentation):
    """Several instrumentations as one; the first one's spans enclose the next ones' work."""

    def __init__(self, parts: list[Instrumentation]) -> None:
        self.parts = parts

    def wrap_action(self, consumer: Any, action: Any) -> Any:
        for part in reversed(self.parts):
            action = part.wrap_action(consumer, action)
        return action

    def dead_lettered(self, consumer: Any, event: Any, attempts: int) -> None:
        for part in self.parts:
            part.dead_lettered(consumer, event, attempts)

    def committed(self, consumer: Any, partition: int, deliveries: int) -> None:
        for part in self.parts:
            part.committed(consumer, partition, deliveries)

    def publishing(self, events: Any, target: str) -> Any:
        for part in self.parts:
            events = part.publishing(events, target)
        return events

    def request(self, method: str, route: str, service: str | None,
                traceparent: str | None) -> Any:
        found = [part.request(method, route, service, traceparent) for part in self.parts]
        observations = [f for f in found if f is not None]
        return _Requests(observations) if observations else None

    def breaker(self, service: str, instance: str, state: str) -> None:
        for part in self.parts:
            part.breaker(service, instance, state)

    def execution_ended(self, workflow: str, status: str) -> None:
        for part in self.parts:
            part.execution_ended(workflow, status)

    def work(self, name: str, event: Any, attributes: dict[str, str]) -> Any:
        for part in self.parts:  # only tracing observes work
            found = part.work(name, event, attributes)
            if found is not None:
                return found
        return None


class _Requests:
    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.traceparent = next(
            (p.traceparent for p in parts if p.traceparent is not None), None)

    def end(self, status: int, version: str | None) -> None:
        for part in reversed(self.parts):
            part.end(status, version)
