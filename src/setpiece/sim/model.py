"""What the simulator runs: services, their instances' placement and cost, and who calls whom.

A :class:`Model` is plain data, built from a Spigo architecture file (:mod:`setpiece.sim.spigo`)
or from a setpiece ``Stack`` and its cost model (:mod:`setpiece.sim.stack`). It names only
services that have instances; managed pieces (DNS, load balancers, buckets) are folded into the
calls of whoever is in front of them.

The calls of a service are *plans*: after a request is processed, one plan is picked (uniformly
at random) and each of its calls is made, in parallel. A service with no plan is a leaf.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from setpiece.errors import ConfigError
from setpiece.http import CallPolicy
from setpiece.policy import RetryPolicy

__all__ = [
    "REGIONS", "Autoscale", "Call", "Cost", "Model", "ServiceSpec", "break_cycles", "zone_names",
]

# Regions in the order Spigo uses them; each has three zones (a, b, c).
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1",
           "ap-northeast-1")
DISTRIBUTIONS = ("exponential", "constant", "uniform")


def zone_names(region: str) -> tuple[str, str, str]:
    return (f"{region}a", f"{region}b", f"{region}c")


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of one request at one instance.

    * ``latency`` — mean processing time in seconds, drawn from ``distribution``
      (``exponential``, ``constant``, or ``uniform`` over [0, 2 x latency]);
    * ``error_rate`` — share of requests that fail in the handler (a 500: not retried);
    * ``workers`` — requests an instance processes at once (its capacity); more wait in its queue;
    * ``max_inflight`` — requests an instance holds at once, queued, processing or waiting for
      its own calls; more are refused at once with a 503 (backpressure).
    """

    latency: float = 0.002
    distribution: str = "exponential"
    error_rate: float = 0.0
    workers: int = 1
    max_inflight: int = 100

    def __post_init__(self) -> None:
        if not self.latency >= 0:
            raise ConfigError(f"cost latency: must not be negative, got {self.latency!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"cost distribution: {self.distribution!r} is not one of "
                              f"{', '.join(DISTRIBUTIONS)}")
        if not 0 <= self.error_rate <= 1:
            raise ConfigError(f"cost error_rate: must be in [0, 1], got {self.error_rate!r}")
        if self.workers < 1 or self.max_inflight < 1:
            raise ConfigError("cost workers and max_inflight: must be at least 1")


@dataclass(frozen=True, slots=True)
class Autoscale:
    """Scale a service on utilisation (busy workers / all workers) measured every ``interval``
    seconds: above ``target x 1.2`` instances are added, below ``target x 0.5`` removed, within
    ``[minimum, maximum]`` instances. New instances serve ``startup`` seconds after launch."""

    target: float = 0.6
    minimum: int = 1
    maximum: int = 1_000_000
    interval: float = 10.0
    startup: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ConfigError(f"autoscale target: must be in (0, 1), got {self.target!r}")
        if self.minimum < 1 or self.maximum < self.minimum:
            raise ConfigError("autoscale: need 1 <= minimum <= maximum")
        if not self.interval > 0 or self.startup < 0:
            raise ConfigError("autoscale: interval must be positive, startup not negative")


@dataclass(frozen=True, slots=True)
class Call:
    """One call in a plan. ``kind``: ``sync`` (the caller waits for the reply), ``async`` (an
    event: the caller does not wait) or ``stream`` (an event to a partitioned stream: the
    partition's owner in the consumer group takes it). ``leaf``: the callee answers without
    making its own calls (a replica write, or a call that closes a cycle). ``retry``: the
    retries of this call (an event delivery's :class:`~setpiece.RetryPolicy`); None: those of
    the run's :class:`~setpiece.CallPolicy`."""

    target: str
    kind: str = "sync"
    leaf: bool = False
    partitions: int = 0
    label: str = ""
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("sync", "async", "stream"):
            raise ConfigError(f"call to {self.target!r}: kind must be sync, async or stream")
        if self.kind == "stream" and self.partitions < 1:
            raise ConfigError(f"call to {self.target!r}: a stream call needs partitions >= 1")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service: ``count`` instances in each of ``regions``, spread over their zones."""

    name: str
    count: int
    regions: tuple[str, ...] = (REGIONS[0],)
    package: str = ""
    cost: Cost = field(default_factory=Cost)
    plans: tuple[tuple[Call, ...], ...] = ()
    autoscale: Autoscale | None = None
    version: str = "1"

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ConfigError(f"service {self.name!r}: count must not be negative")
        for region in self.regions:
            if region not in REGIONS:
                raise ConfigError(f"service {self.name!r}: unknown region {region!r}")


@dataclass(frozen=True, slots=True)
class Model:
    """An architecture to simulate. ``entry``: the plans of outside clients (one is picked per
    request at the ``rate`` of the run)."""

    name: str
    services: tuple[ServiceSpec, ...]
    entry: tuple[tuple[Call, ...], ...]
    description: str = ""
    managed: tuple[str, ...] = ()  # services folded into their callers (no instances)
    calls: CallPolicy | None = None  # the architecture's own call policy (a stack's ``calls``)
    edges: tuple[tuple[str, str], ...] = ()  # the declared dependencies, for the graph

    def __post_init__(self) -> None:
        names = [s.name for s in self.services]
        known = set(names)
        if len(known) != len(names):
            raise ConfigError(f"model {self.name!r}: a service is declared twice")
        if not self.entry:
            raise ConfigError(f"model {self.name!r}: no entry point (nothing receives traffic)")
        for where, plans in [("entry", self.entry)] + [(s.name, s.plans) for s in self.services]:
            for plan in plans:
                for call in plan:
                    if call.target not in known:
                        raise ConfigError(f"{where}: calls unknown service {call.target!r}")
        cycle = _cycle(self.services)
        if cycle:
            raise ConfigError(f"model {self.name!r}: the calls loop ({' -> '.join(cycle)}); mark "
                              "the call that closes the loop leaf=True")

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise ConfigError(f"model {self.name!r}: no service {name!r}")

    @property
    def instances(self) -> int:
        return sum(s.count * len(s.regions) for s in self.services)


def _graph(services: tuple[ServiceSpec, ...]) -> dict[str, list[str]]:
    """Who calls whom without the leaf calls (those end the chain)."""
    out: dict[str, list[str]] = {}
    for spec in services:
        targets = out.setdefault(spec.name, [])
        for plan in spec.plans:
            for call in plan:
                if not call.leaf and call.target not in targets:
                    targets.append(call.target)
    return out


def _back_edges(graph: dict[str, list[str]], starts: Iterable[str]
                ) -> Iterator[tuple[list[str], str]]:
    """Every call that closes a loop, walking ``graph`` depth first from each of ``starts`` not
    yet walked: ``(path, target)``, ``path`` the walk's path (its last service makes the call;
    read it before the next one) and ``target`` a service on it."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in starts:
        if start in state or start not in graph:
            continue
        path = [start]
        todo = [iter(graph[start])]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                yield path, nxt
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(graph[nxt]))


def _cycle(services: tuple[ServiceSpec, ...]) -> list[str]:
    """A loop of non-leaf calls (a request would never end), or []."""
    graph = _graph(services)
    for path, nxt in _back_edges(graph, graph):
        return [*path[path.index(nxt):], nxt]
    return []


def break_cycles(services: list[ServiceSpec], roots: list[str]) -> list[ServiceSpec]:
    """Mark as leaf every call that closes a loop, walking depth first from ``roots`` (then from
    the other services, in order), so every request ends."""
    graph = _graph(tuple(services))
    closing = {(path[-1], nxt) for path, nxt in _back_edges(graph, [*roots, *graph])}
    if not closing:
        return services
    out = []
    for spec in services:
        plans = tuple(
            tuple(replace(c, leaf=True) if (spec.name, c.target) in closing else c for c in plan)
            for plan in spec.plans)
        out.append(replace(spec, plans=plans))
    return out
