"""A simulation: the architecture laid out as columns of plain lists, and one run of it.

Instances are columns of plain lists indexed by instance number (service, zone, cost, alive,
when each worker is free, requests held) rather than one object each; costs are rows of
columns too, one per (service, version). The run's counters are plain lists per service, per
edge and per zone, read by :mod:`setpiece.sim.output` once the run is over.

Discovery: each zone has one registry per region, a list of instance numbers per service (all
zones of the region, and its own zone); a change is applied to each zone's registry by one event
after the refresh or replication delay, as a new list (copy on write), so a run does O(instances)
registry work per change batch and no instance holds a copy of the registry.

The run itself is split by concept:

* :mod:`setpiece.sim.loop` — the discrete-event loop (the hot path: calls, queues, replies,
  timeouts and retries);
* :mod:`setpiece.sim.breakers` — the circuit breakers per edge and instance;
* :mod:`setpiece.sim.fleet` — what changes the instances during a run: discovery updates,
  chaos, code pushes and autoscaling.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from typing import Any

from setpiece.errors import ConfigError
from setpiece.policy import RetryPolicy
from setpiece.sim import loop
from setpiece.sim.chaos import ChaosEvent
from setpiece.sim.config import SimConfig
from setpiece.sim.fleet import region_zones
from setpiece.sim.model import Call, Cost, Model, zone_names

__all__ = ["Simulation"]

DISTS = {"exponential": 0, "constant": 1, "uniform": 2}
# an edge: (source service or -1 for outside clients, target, kind, leaf, partitions)
Edge = tuple[int, int, str, bool, int]


class Simulation:
    """One run of ``model`` under ``config``: call :meth:`run` once."""

    def __init__(self, model: Model, config: SimConfig | None = None) -> None:
        self.model = model
        self.config = config = config or SimConfig()
        self.rng = random.Random(config.seed)
        regions: list[str] = []
        for spec in model.services:
            for region in spec.regions:
                if region not in regions:
                    regions.append(region)
        self.zones: list[str] = [z for r in regions for z in zone_names(r)]
        self.zone_region: list[int] = [n // 3 for n in range(len(self.zones))]
        self.regions = regions
        self.svc_names = [s.name for s in model.services]
        self.svc_index = {name: n for n, name in enumerate(self.svc_names)}
        for event in config.chaos:
            self._check_chaos(event)
        net = config.network
        nz = len(self.zones)
        self.nz = nz
        self.latency = [
            net.zone if a == b else net.cross_zone if a // 3 == b // 3 else net.cross_region
            for a in range(nz) for b in range(nz)]
        # costs: one row per (service, version)
        self.costs: list[Cost] = []
        self.cost_version: list[str] = []
        self.c_mean: list[float] = []
        self.c_dist: list[int] = []
        self.c_err: list[float] = []
        self.c_workers: list[int] = []
        self.c_max: list[int] = []
        self.edges: list[Edge] = []
        self.edge_retry: list[RetryPolicy | None] = []
        edge_ids: dict[Edge, int] = {}

        def edge(src: int, call: Call) -> int:
            key = (src, self.svc_index[call.target], call.kind, call.leaf, call.partitions)
            if key not in edge_ids:
                edge_ids[key] = len(self.edges)
                self.edges.append(key)
                self.edge_retry.append(call.retry)
            return edge_ids[key]

        self.plans: list[list[tuple[int, ...]]] = [
            [tuple(edge(n, c) for c in plan) for plan in spec.plans]
            for n, spec in enumerate(model.services)]
        self.entry: list[tuple[int, ...]] = [tuple(edge(-1, c) for c in plan)
                                             for plan in model.entry]
        self.svc_cost = [self.add_cost(s.cost, s.version) for s in model.services]
        # instances (columns)
        self.i_svc: list[int] = []
        self.i_zone: list[int] = []
        self.i_cost: list[int] = []
        self.i_alive: list[bool] = []
        self.i_free: list[Any] = []  # float (one worker) or a heap of floats
        self.i_held: list[int] = []  # requests admitted and not yet answered
        self.i_born: list[float] = []
        ns = len(self.svc_names)
        # registries: reg_all[zone][svc] (the region's instances), reg_local[zone][svc]
        self.reg_all: list[list[list[int]]] = [[[] for _ in range(ns)] for _ in range(nz)]
        self.reg_local: list[list[list[int]]] = [[[] for _ in range(ns)] for _ in range(nz)]
        self.alive_count = [0] * ns
        self.alive_zone = [[0] * nz for _ in range(ns)]
        for n, spec in enumerate(model.services):
            for region in spec.regions:
                zones = region_zones(self.regions.index(region))
                for k in range(spec.count):
                    inst = self.add_instance(n, zones[k % 3], self.svc_cost[n], 0.0)
                    for zone in zones:
                        self.reg_all[zone][n].append(inst)
                    self.reg_local[zones[k % 3]][n].append(inst)
        self.initial_instances = len(self.i_svc)
        self._ran = False
        # what the run changes: per service requests delivered, errors, refusals, replies,
        # time in the service, requests held, busy time, latency histogram (10 µs buckets)
        # and processing latency added by chaos
        self.s_req, self.s_err, self.s_refused, self.s_done, self.s_held = (
            [0] * ns for _ in range(5))
        self.s_soj, self.s_busy, self.s_extra = ([0.0] * ns for _ in range(3))
        self.s_hist: list[dict[int, int]] = [{} for _ in range(ns)]
        # per edge: calls finished, errors, retries, timeouts and their summed latency
        ne = len(self.edges)
        self.e_calls, self.e_errors, self.e_retries, self.e_timeouts = ([0] * ne for _ in range(4))
        self.e_lat = [0.0] * ne
        # outside requests: [requests, errors], per zone, and their latency histogram
        self.roots = [0, 0]
        self.root_zone_req, self.root_zone_err = [0] * nz, [0] * nz
        self.root_lat: dict[int, int] = {}
        self.root_count = 0  # outside requests generated
        # chaos: pairs of zones that cannot reach each other, zones dead and alive
        self.blocked: set[tuple[int, int]] = set()
        self.dead_zones: set[int] = set()
        self.live_zones = list(range(nz))
        self.rate = 0.0  # outside requests per simulated second (set when the run starts)
        self.messages = 0
        self.timeline: list[dict[str, Any]] = []
        self.pending: list[int] = []  # events in the heap at each sample
        self.spans: list[tuple[Any, ...]] = []
        self.log: list[str] = []

    # -- building ------------------------------------------------------------------------------

    def add_cost(self, cost: Cost, version: str) -> int:
        """Add a row of costs (the run reads the columns, which grow with code pushes)."""
        self.costs.append(cost)
        self.cost_version.append(version)
        self.c_mean.append(cost.latency)
        self.c_dist.append(DISTS[cost.distribution])
        self.c_err.append(cost.error_rate)
        self.c_workers.append(cost.workers)
        self.c_max.append(cost.max_inflight)
        return len(self.costs) - 1

    def add_instance(self, svc: int, zone: int, cost: int, now: float) -> int:
        """Add an instance (alive, unregistered) and return its number."""
        self.i_svc.append(svc)
        self.i_zone.append(zone)
        self.i_cost.append(cost)
        self.i_alive.append(True)
        workers = self.costs[cost].workers
        self.i_free.append(0.0 if workers == 1 else [0.0] * workers)
        self.i_held.append(0)
        self.i_born.append(now)
        self.alive_count[svc] += 1
        self.alive_zone[svc][zone] += 1
        return len(self.i_svc) - 1

    def _check_chaos(self, event: ChaosEvent) -> None:
        where = f"chaos {event.action} at {event.at:g}s"
        if event.service and event.service not in self.svc_index:
            raise ConfigError(f"{where}: unknown service {event.service!r} "
                              f"(services: {', '.join(self.svc_names)})")
        for zone in ([event.zone] if event.zone else []) + list(event.zones):
            if zone not in self.zones:
                raise ConfigError(f"{where}: unknown zone {zone!r} "
                                  f"(zones: {', '.join(self.zones)})")
        if event.region and event.region not in self.regions:
            raise ConfigError(f"{where}: unknown region {event.region!r} "
                              f"(regions: {', '.join(self.regions)})")

    def default_rate(self) -> float:
        """Half of the outside request rate that the busiest service can take."""
        visits = [0.0] * len(self.svc_names)

        def walk(edges: tuple[int, ...], weight: float, depth: int) -> None:
            for e in edges:
                target, leaf = self.edges[e][1], self.edges[e][3]
                visits[target] += weight
                plans = self.plans[target]
                if plans and not leaf and depth < 64:
                    for plan in plans:
                        walk(plan, weight / len(plans), depth + 1)

        for plan in self.entry:
            walk(plan, 1 / len(self.entry), 0)
        limits = []
        for n, v in enumerate(visits):
            cost = self.costs[self.svc_cost[n]]
            if v > 0 and cost.latency > 0:
                limits.append(self.alive_count[n] * cost.workers / cost.latency / v)
        return 0.5 * min(limits) if limits else 100.0

    # -- the run -------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Run the simulation to its end (``progress`` is told the simulated time at every
        sample). The loop makes no reference cycles (a call points to its parent's job, never
        back), so it runs with the cyclic garbage collector paused: with 100,000 instances
        its passes cost a third of the time."""
        if self._ran:
            raise RuntimeError("Simulation.run: a simulation runs once; make a new one")
        self._ran = True
        paused = gc.isenabled()
        gc.disable()
        try:
            loop.run(self, progress)
        finally:
            if paused:
                gc.enable()
