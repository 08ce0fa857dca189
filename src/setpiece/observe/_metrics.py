"""Prometheus metrics of one runtime, in a registry of its own.

Counting is plain Python arithmetic on the hot path (an attempt costs two clock reads, a bisect
and a few additions); :class:`Metrics` turns the counts into Prometheus metric families only
when they are read (``await rt.metrics()``, ``GET /metrics``). Consumer lag is read from the
engine at that moment, so it is exact when scraped.

Metrics (Prometheus naming: ``_total`` counters, ``_seconds`` histograms):

- ``setpiece_deliveries_total{consumer,kind}`` — delivery attempts run (handlers and rule
  targets; ``kind`` is ``handler`` or ``rule``), ``setpiece_delivery_failures_total`` —
  attempts that failed, ``setpiece_delivery_retries_total`` — attempts after the first,
  ``setpiece_dead_letters_total`` — records dead-lettered, ``setpiece_delivery_duration_seconds``
  — time per attempt;
- ``setpiece_consumer_lag{group,stream,partition}`` — records not yet committed;
- ``setpiece_rule_matches_total{bus,rule}`` — events a rule (or a handler's pattern) matched;
- ``setpiece_events_published_total{stream}`` — events published from outside handlers;
- ``setpiece_http_requests_total{method,route,version,status}`` and
  ``setpiece_http_request_duration_seconds{method,route,version}``;
- ``setpiece_breaker_state{service,instance}`` — 0 closed, 1 half-open, 2 open;
- ``setpiece_workflow_executions_ended_total{workflow,status}`` — durable executions this
  process brought to an end, by final status.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from setpiece.event import Event
from setpiece.runtime.extension import Action
from setpiece.runtime.instrument import Instrumentation, RequestObservation
from setpiece.signals import Drop

if TYPE_CHECKING:
    from setpiece.runtime.consumer import Consumer
    from setpiece.runtime.runtime import Runtime
    from setpiece.runtime.unit import Attempt

__all__ = ["BOUNDS", "Metrics", "Timings"]

#: Histogram bucket bounds in seconds (``le``), from 0.5 ms to 10 s.
BOUNDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_BREAKER = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


class Timings:
    """A histogram's counts: one per bucket of :data:`BOUNDS` and one past the last."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*BOUNDS, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    def quantile(self, q: float) -> float | None:
        """The bucket bound under which a fraction ``q`` of the observations fall."""
        total = self.count
        if not total:
            return None
        running = 0
        for bound, n in zip((*BOUNDS, float("inf")), self.counts, strict=True):
            running += n
            if running >= q * total:
                return bound
        return float("inf")  # pragma: no cover - the loop always returns


class ConsumerStats:
    """What one consumer's attempts did, since the runtime started."""

    __slots__ = ("bus", "dead_letters", "deliveries", "failures", "group", "kind", "recent",
                 "retries", "rule", "stream", "timings")

    def __init__(self, consumer: Consumer) -> None:
        self.group = consumer.group
        self.stream = consumer.stream
        self.kind = "rule" if consumer.group.startswith("rule.") else "handler"
        self.bus = consumer.stream[4:] if consumer.stream.startswith("bus.") else None
        self.rule = consumer.rule or consumer.group
        self.deliveries = 0
        self.failures = 0
        self.retries = 0
        self.dead_letters = 0
        self.timings = Timings()
        #: the last attempts: (wall time, event id, event type, seconds, failed) for the map
        self.recent: deque[tuple[float, str, str, float, bool]] = deque(maxlen=20)


class _Request(RequestObservation):
    __slots__ = ("method", "metrics", "route", "started")

    def __init__(self, metrics: Metrics, method: str, route: str) -> None:
        self.metrics = metrics
        self.method = method
        self.route = route
        self.started = time.perf_counter()

    def end(self, status: int, version: str | None) -> None:
        elapsed = time.perf_counter() - self.started
        key = (self.method, self.route, version or "")
        counts = self.metrics.http_counts
        counts[(*key, status)] = counts.get((*key, status), 0) + 1
        timings = self.metrics.http_timings.get(key)
        if timings is None:
            timings = self.metrics.http_timings[key] = Timings()
        timings.observe(elapsed)


class Metrics(Instrumentation):
    """Counts what a runtime does; renders it as Prometheus text (its own registry)."""

    def __init__(self) -> None:
        self.consumers: dict[str, ConsumerStats] = {}
        self.published: dict[str, int] = {}
        self.http_counts: dict[tuple[str, str, str, int], int] = {}
        self.http_timings: dict[tuple[str, str, str], Timings] = {}
        self.breakers: dict[tuple[str, str], str] = {}
        self.lag: dict[tuple[str, str, int], int] = {}
        self.executions: dict[tuple[str, str], int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # a collector: it has collect()
        self._runtime: Runtime | None = None

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    # -- Instrumentation --------------------------------------------------------------------

    def stats(self, consumer: Consumer) -> ConsumerStats:
        found = self.consumers.get(consumer.group)
        if found is None:
            found = self.consumers[consumer.group] = ConsumerStats(consumer)
        return found

    def wrap_action(self, consumer: Consumer, action: Action) -> Action:
        stats = self.stats(consumer)
        timings = stats.timings
        counts = timings.counts
        recent = stats.recent
        perf, wall = time.perf_counter, time.time

        async def counted(event: Event, attempt: Attempt, number: int) -> None:
            start = perf()
            failed = False
            try:
                await action(event, attempt, number)
            except Drop:
                raise
            except Exception:
                stats.failures += 1
                failed = True
                raise
            finally:
                elapsed = perf() - start
                stats.deliveries += 1
                counts[bisect_left(BOUNDS, elapsed)] += 1
                timings.sum += elapsed
                if number > 1:
                    stats.retries += 1
                recent.append((wall(), event.id, event.type, elapsed, failed))

        return counted

    def dead_lettered(self, consumer: Consumer, event: Event | None, attempts: int) -> None:
        self.stats(consumer).dead_letters += 1

    def publishing(self, events: list[Event], target: str) -> list[Event]:
        self.published[target] = self.published.get(target, 0) + len(events)
        return events

    def request(
        self, method: str, route: str, service: str | None, traceparent: str | None
    ) -> RequestObservation:
        return _Request(self, method, route)

    def breaker(self, service: str, instance: str, state: str) -> None:
        self.breakers[(service, instance)] = state

    def execution_ended(self, workflow: str, status: str) -> None:
        key = (workflow, status)
        self.executions[key] = self.executions.get(key, 0) + 1

    # -- reading ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read what the engine knows now (consumer lag) before the metrics are rendered."""
        runtime = self._runtime
        if runtime is None:
            return
        ends: dict[str, list[int]] = {}
        lag: dict[tuple[str, str, int], int] = {}
        for consumer in runtime.consumers:
            stream_ends = ends.get(consumer.stream)
            if stream_ends is None:
                stream_ends = ends[consumer.stream] = await runtime.engine.end_offsets(
                    consumer.stream)
            committed = await runtime.engine.committed(consumer.group, consumer.stream)
            for partition, end in enumerate(stream_ends):
                lag[(consumer.group, consumer.stream, partition)] = max(
                    0, end - committed.get(partition, 0))
        self.lag = lag

    async def text(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        await self.refresh()
        return generate_latest(self.registry).decode()

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus_client's collector interface)."""
        labels = ["consumer", "kind"]
        deliveries = CounterMetricFamily(
            "setpiece_deliveries", "Delivery attempts run, per consumer.", labels=labels)
        failures = CounterMetricFamily(
            "setpiece_delivery_failures", "Delivery attempts that failed.", labels=labels)
        retries = CounterMetricFamily(
            "setpiece_delivery_retries", "Delivery attempts after the first.", labels=labels)
        dead = CounterMetricFamily(
            "setpiece_dead_letters", "Records dead-lettered, per consumer.", labels=labels)
        duration = HistogramMetricFamily(
            "setpiece_delivery_duration_seconds", "Time per delivery attempt.", labels=labels)
        matches = CounterMetricFamily(
            "setpiece_rule_matches", "Events a rule or a handler's pattern matched, per bus.",
            labels=["bus", "rule"])
        for stats in self.consumers.values():
            values = [stats.group, stats.kind]
            deliveries.add_metric(values, stats.deliveries)
            failures.add_metric(values, stats.failures)
            retries.add_metric(values, stats.retries)
            dead.add_metric(values, stats.dead_letters)
            duration.add_metric(values, stats.timings.buckets(), stats.timings.sum)
            if stats.bus is not None:
                matches.add_metric([stats.bus, stats.rule], stats.deliveries - stats.retries)
        yield from (deliveries, failures, retries, dead, duration, matches)
        lag = GaugeMetricFamily("setpiece_consumer_lag", "Records not yet committed.",
                                labels=["group", "stream", "partition"])
        for (group, stream, partition), n in sorted(self.lag.items()):
            lag.add_metric([group, stream, str(partition)], n)
        yield lag
        published = CounterMetricFamily(
            "setpiece_events_published", "Events published from outside handlers.",
            labels=["stream"])
        for stream, n in sorted(self.published.items()):
            published.add_metric([stream], n)
        yield published
        executions = CounterMetricFamily(
            "setpiece_workflow_executions_ended",
            "Durable workflow executions this process ended, by final status.",
            labels=["workflow", "status"])
        for (workflow, status), n in sorted(self.executions.items()):
            executions.add_metric([workflow, status], n)
        yield executions
        yield from self._http()

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "setpiece_http_requests", "HTTP requests served, per route, version and status.",
            labels=["method", "route", "version", "status"])
        for (method, route, version, status), n in sorted(self.http_counts.items()):
            requests.add_metric([method, route, version, str(status)], n)
        duration = HistogramMetricFamily(
            "setpiece_http_request_duration_seconds", "Time to serve an HTTP request.",
            labels=["method", "route", "version"])
        for key, timings in sorted(self.http_timings.items()):
            duration.add_metric(list(key), timings.buckets(), timings.sum)
        breakers = GaugeMetricFamily(
            "setpiece_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            labels=["service", "instance"])
        for (service, instance), state in sorted(self.breakers.items()):
            breakers.add_metric([service, instance], _BREAKER.get(state, 0.0))
        yield from (requests, duration, breakers)

    def describe(self) -> list[Any]:
        return []
