"""The discrete-event loop: instances, discovery, load balancing, queues, calls and chaos.

Time is simulated: one ``heapq`` of ``(time, seq, kind, call, attempt)`` and one FIFO of
deadlines (every call has the same timeout, so deadlines come in the order calls are sent and
need no heap). ``seq`` breaks ties, so a run is a function of its model, config and seed.

Instances are columns of plain lists indexed by instance number (service, zone, cost, alive,
when each worker is free, requests held) rather than one object each. A request waits in its
instance's FIFO queue: with one worker the time it starts is ``max(arrival, free)`` and its end
is known when it arrives (Lindley's recursion), so a leaf's reply is one event.

Discovery: each zone has one registry per region, a list of instance numbers per service (all
zones of the region, and its own zone); a change is applied to each zone's registry by one event
after the refresh or replication delay, as a new list (copy on write), so a run does O(instances)
registry work per change batch and no instance holds a copy of the registry.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from setpiece.errors import ConfigError
from setpiece.http import BreakerPolicy
from setpiece.policy import RetryPolicy
from setpiece.sim.chaos import ChaosEvent
from setpiece.sim.config import SimConfig
from setpiece.sim.model import Cost, Model, zone_names

__all__ = ["Simulation"]

# event kinds (ints compare fast; ties are broken by seq before the kind is looked at)
DONE, REPLY, RETRY, GEN, MISC, END = range(6)
# call record fields (a list per call; ``INST`` is the instance of the latest attempt)
PARENT, EDGE, ATT, INST, SENT, FIN, T0, ZONE, TRACE = range(9)
# job record fields (a list per request that an instance handles with calls of its own)
J_CALL, J_ATT, J_INST, J_ARR, J_PEND, J_FAIL, J_SPAN = range(7)
# reply codes
OK, ERROR, REFUSED, BAD_GATEWAY = 200, 500, 503, 502
DISTS = {"exponential": 0, "constant": 1, "uniform": 2}


class _Breaker:
    """The breaker of one instance as seen by one edge (the same states and rules as the
    gateway's: consecutive failures or a failure rate open it, a probe after the cool-down)."""

    __slots__ = ("consecutive", "opened_at", "probing", "recent", "state")

    def __init__(self, window: int) -> None:
        self.state = 0  # 0 closed, 1 open, 2 half-open
        self.consecutive = 0
        self.recent: deque[bool] = deque(maxlen=window)
        self.opened_at = 0.0
        self.probing = False


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
        # edges: (source service or -1 for outside clients, target, kind, leaf, partitions)
        self.edges: list[tuple[int, int, str, bool, int]] = []
        edge_ids: dict[tuple[int, int, str, bool, int], int] = {}

        self.edge_retry: list[RetryPolicy | None] = []

        def edge(src: int, call: Any) -> int:
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
        self.svc_cost = [self._cost(s.cost, s.version) for s in model.services]
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
                base = self.regions.index(region) * 3
                for k in range(spec.count):
                    inst = self._new_instance(n, base + k % 3, self.svc_cost[n], 0.0)
                    self.reg_all[base][n].append(inst)
                    self.reg_all[base + 1][n].append(inst)
                    self.reg_all[base + 2][n].append(inst)
                    self.reg_local[base + k % 3][n].append(inst)
        self.initial_instances = len(self.i_svc)
        self._ran = False
        # results
        self.messages = 0
        self.timeline: list[dict[str, Any]] = []
        self.pending: list[int] = []  # events in the heap at each sample
        self.spans: list[tuple[Any, ...]] = []
        self.log: list[str] = []

    # -- building ------------------------------------------------------------------------------

    def _cost(self, cost: Cost, version: str) -> int:
        """Add a row of costs (the run reads the columns, which grow with code pushes)."""
        self.costs.append(cost)
        self.cost_version.append(version)
        self.c_mean.append(cost.latency)
        self.c_dist.append(DISTS[cost.distribution])
        self.c_err.append(cost.error_rate)
        self.c_workers.append(cost.workers)
        self.c_max.append(cost.max_inflight)
        return len(self.costs) - 1

    def _new_instance(self, svc: int, zone: int, cost: int, now: float) -> int:
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
        if event.zone and event.zone not in self.zones:
            raise ConfigError(f"{where}: unknown zone {event.zone!r} "
                              f"(zones: {', '.join(self.zones)})")
        for zone in event.zones:
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
            self._run(progress)
        finally:
            if paused:
                gc.enable()

    def _run(self, progress: Callable[[float], None] | None) -> None:
        config = self.config
        duration = config.duration
        rate = config.rate or self.default_rate()
        self.rate = rate
        rng = self.rng
        rnd = rng.random
        log = math.log
        heap: list[tuple[Any, ...]] = []
        push = heapq.heappush
        pop = heapq.heappop
        heapreplace = heapq.heapreplace
        seq = itertools.count().__next__
        tq: deque[tuple[float, list[Any], int]] = deque()
        tq_append = tq.append
        policy = config.calls
        timeout = policy.timeout
        max_att = 1 + policy.retries
        backoff = [policy.retry_policy.delay(n) for n in range(1, max_att + 1)]
        bpol: BreakerPolicy = policy.breaker
        use_breakers = config.breakers
        affinity = config.zone_affinity
        latency = self.latency
        nz = self.nz
        edges = self.edges
        e_dst = [e[1] for e in edges]
        e_kind = [0 if e[2] == "sync" else 1 if e[2] == "async" else 2 for e in edges]
        e_parts = [e[4] for e in edges]
        e_retry = self.edge_retry
        # the callee answers at once (a leaf call, or a service that calls nobody)
        e_ends = [e[3] or not self.plans[e[1]] for e in edges]
        # the instance is picked from the caller's zone, with no more to decide
        e_local = [k != 2 and affinity >= 1.0 for k in e_kind]
        ne = len(edges)
        e_calls = [0] * ne
        e_errors = [0] * ne
        e_retries = [0] * ne
        e_timeouts = [0] * ne
        e_lat = [0.0] * ne
        breakers: list[dict[int, _Breaker]] = [{} for _ in range(ne)]
        open_count = [0] * ne
        plans = self.plans
        entry = self.entry
        c_mean, c_dist, c_err = self.c_mean, self.c_dist, self.c_err
        c_workers, c_max = self.c_workers, self.c_max
        ns = len(self.svc_names)
        s_req = [0] * ns
        s_err = [0] * ns
        s_refused = [0] * ns
        s_done = [0] * ns
        s_soj = [0.0] * ns
        s_held = [0] * ns
        s_busy = [0.0] * ns
        s_hist: list[dict[int, int]] = [{} for _ in range(ns)]
        s_extra = [0.0] * ns  # added processing latency (chaos)
        self.s_req, self.s_err, self.s_refused = s_req, s_err, s_refused
        self.s_done, self.s_soj, self.s_hist, self.s_busy = s_done, s_soj, s_hist, s_busy
        self.e_calls, self.e_errors, self.e_retries = e_calls, e_errors, e_retries
        self.e_timeouts, self.e_lat = e_timeouts, e_lat
        i_svc, i_zone, i_cost, i_alive = self.i_svc, self.i_zone, self.i_cost, self.i_alive
        i_free, i_held = self.i_free, self.i_held
        reg_all, reg_local = self.reg_all, self.reg_local
        blocked: set[tuple[int, int]] = set()
        self.blocked = blocked
        root_zone_req = [0] * nz
        root_zone_err = [0] * nz
        self.root_zone_req, self.root_zone_err = root_zone_req, root_zone_err
        root_lat: dict[int, int] = {}
        self.root_lat = root_lat
        roots = [0, 0]  # requests, errors
        self.roots = roots
        dead_zones: set[int] = set()
        self.dead_zones = dead_zones
        live_zones = self.live_zones = list(range(nz))
        trace_every = config.trace_every
        span_ids = itertools.count(1).__next__
        spans = self.spans
        replies = 0
        n_root = 0
        s_extra_any = False

        def pick(e: int, zone: int, now: float) -> int:
            """An instance of the edge's target as the caller's zone registry lists it, zone
            first; a breaker-open one is skipped unless every one is (panic)."""
            s = e_dst[e]
            kind = e_kind[e]
            if kind == 2:  # a stream: the partition's owner in the consumer group
                members = reg_all[zone][s]
                if not members:
                    return -1
                return members[int(rnd() * e_parts[e]) % len(members)]
            local = reg_local[zone][s]
            if local and (affinity >= 1.0 or rnd() < affinity):
                lst = local
            else:
                lst = reg_all[zone][s]
                if not lst:
                    return -1
            inst = lst[int(rnd() * len(lst))]
            if use_breakers and open_count[e]:
                table = breakers[e]
                for _ in range(4):
                    br = table.get(inst)
                    if br is None or allow(br, now):
                        return inst
                    inst = lst[int(rnd() * len(lst))]
                wide = reg_all[zone][s]
                for cand in wide:
                    br = table.get(cand)
                    if br is None or allow(br, now):
                        return cand
                if open_count[e] / len(wide) > 1.0 - bpol.panic_threshold:
                    return inst  # panic: spread over all of them
                return -2  # every instance ejected
            return inst

        def allow(br: _Breaker, now: float) -> bool:
            if br.state == 0:
                return True
            if br.state == 1:
                if now - br.opened_at < bpol.cooldown:
                    return False
                br.state = 2
                br.probing = False
            if br.probing:
                return False
            br.probing = True
            return True

        def record(e: int, inst: int, ok: bool, now: float) -> None:
            table = breakers[e]
            br = table.get(inst)
            if br is None:
                if ok:
                    return
                br = table[inst] = _Breaker(bpol.window)
            if br.state == 2:
                br.probing = False
                if ok:
                    br.state = 0
                    br.consecutive = 0
                    br.recent.clear()
                    open_count[e] -= 1
                else:
                    br.state = 1
                    br.opened_at = now
                return
            br.recent.append(ok)
            if ok:
                br.consecutive = 0
                return
            br.consecutive += 1
            if br.state == 0:
                recent = br.recent
                if br.consecutive >= bpol.failures or (
                        len(recent) >= bpol.min_calls
                        and recent.count(False) / len(recent) >= bpol.failure_rate):
                    br.state = 1
                    br.opened_at = now
                    open_count[e] += 1

        def send(call: list[Any], now: float) -> None:
            """Send an attempt of ``call``: pick an instance, and queue the request there.

            The request joins its instance's queue when it is sent (the instance's state is read
            then, not a network hop later); it starts at ``max(arrival, free)``, so the order of
            the queue is the order of sending.
            """
            e = call[EDGE]
            zone = call[ZONE]
            att = call[ATT] + 1
            call[ATT] = att
            call[SENT] = now
            local = reg_local[zone][e_dst[e]]
            if local and e_local[e] and not open_count[e]:
                inst = local[int(rnd() * len(local))]
            else:
                inst = pick(e, zone, now)
                if inst < 0:  # nobody to call
                    failed(call, att, now, False)
                    return
            call[INST] = inst
            iz = i_zone[inst]
            if blocked and ((zone, iz) in blocked):
                tq_append((now + timeout, call, att))
                return  # lost in the partition: the caller times out
            s = i_svc[inst]
            s_req[s] += 1  # a request message delivered
            if not i_alive[inst]:
                tq_append((now + timeout, call, att))
                return  # lost: the caller times out
            ci = i_cost[inst]
            held = i_held[inst]
            lat = latency[zone * nz + iz]
            if held >= c_max[ci]:
                s_refused[s] += 1
                s_err[s] += 1
                push(heap, (now + lat + lat, seq(), REPLY, call, att, REFUSED, inst, now))
                return
            i_held[inst] = held + 1
            s_held[s] += 1
            dist = c_dist[ci]
            mean = c_mean[ci]
            if dist == 0:
                st = -mean * log(1.0 - rnd())
            elif dist == 1:
                st = mean
            else:
                st = 2.0 * mean * rnd()
            if s_extra_any:
                st += s_extra[s]
            s_busy[s] += st
            arrival = now + lat
            if c_workers[ci] == 1:
                free = i_free[inst]
                done = (arrival if free < arrival else free) + st
                i_free[inst] = done
            else:
                workers = i_free[inst]
                free = workers[0]
                done = (arrival if free < arrival else free) + st
                heapreplace(workers, done)
            # a deadline is only watched when the reply may come after it (the reply of a
            # request answered at once is known now)
            err = c_err[ci]
            if err and rnd() < err:
                push(heap, (done + lat, seq(), REPLY, call, att, ERROR, inst, now))
            elif e_ends[e]:
                push(heap, (done + lat, seq(), REPLY, call, att, OK, inst, now))
            else:
                push(heap, (done, seq(), DONE, call, att, 0, inst, now))
                tq_append((now + timeout, call, att))
                return
            if done + lat > now + timeout:
                tq_append((now + timeout, call, att))

        def failed(call: list[Any], att: int, now: float, timed_out: bool) -> None:
            """An attempt failed in a way worth retrying (refused, timed out, nobody to call)."""
            e = call[EDGE]
            if timed_out:
                e_timeouts[e] += 1
            retry = e_retry[e]
            if retry is None and att < max_att:
                e_retries[e] += 1
                push(heap, (now + backoff[att - 1], seq(), RETRY, call, att, 0, 0, 0.0))
            elif retry is not None and att < retry.max_attempts:
                e_retries[e] += 1
                push(heap, (now + retry.delay(att, rng), seq(), RETRY, call, att, 0, 0, 0.0))
            else:
                finish(call, False, now)

        def finish(call: list[Any], ok: bool, now: float) -> None:
            call[FIN] = True
            e = call[EDGE]
            e_calls[e] += 1
            e_lat[e] += now - call[T0]
            if not ok:
                e_errors[e] += 1
            trace = call[TRACE]
            if trace is not None:
                spans.append((trace[0], trace[1], trace[2], e, call[T0], now, ok,
                              call[INST], call[ATT]))
            job = call[PARENT]
            if job is None:
                if e_kind[e] == 0 or edges[e][0] < 0:
                    zone = call[ZONE]
                    roots[0] += 1
                    root_zone_req[zone] += 1
                    if not ok:
                        roots[1] += 1
                        root_zone_err[zone] += 1
                    k = int((now - call[T0]) * 1e5)
                    root_lat[k] = root_lat.get(k, 0) + 1
                return
            if not ok:
                job[J_FAIL] = True
            pend = job[J_PEND] - 1
            job[J_PEND] = pend
            if pend == 0:
                answer(job, now)

        def answer(job: list[Any], now: float) -> None:
            """The instance of ``job`` replies (its calls are all done)."""
            inst = job[J_INST]
            if not i_alive[inst]:
                return
            call = job[J_CALL]
            caller_zone = call[ZONE]
            iz = i_zone[inst]
            if blocked and (iz, caller_zone) in blocked:
                return
            push(heap, (now + latency[iz * nz + caller_zone], seq(), REPLY, call, job[J_ATT],
                        BAD_GATEWAY if job[J_FAIL] else OK, inst, job[J_ARR]))

        def root(now: float) -> None:
            nonlocal n_root
            plan = entry[int(rnd() * len(entry))] if len(entry) > 1 else entry[0]
            live = live_zones
            if not live:
                return
            zone = live[int(rnd() * len(live))]
            n_root += 1
            traced = trace_every and n_root % trace_every == 1 % trace_every
            for e in plan:
                call: list[Any] = [None, e, 0, -1, now, False, now, zone, None]
                if traced:
                    call[TRACE] = (n_root, span_ids(), 0)
                send(call, now)

        def at(when: float, fn: Callable[[float], None]) -> None:
            push(heap, (when, seq(), MISC, fn, 0, 0, 0, 0.0))

        interval = config.sample_interval or duration / 100
        prev = {"req": [0] * ns, "err": [0] * ns}

        def sample(now: float) -> None:
            services: dict[str, Any] = {}
            row = {"t": round(now, 6), "services": services}
            for s, name in enumerate(self.svc_names):
                services[name] = {
                    "instances": self.alive_count[s], "in_flight": s_held[s],
                    "requests": s_req[s] - prev["req"][s], "errors": s_err[s] - prev["err"][s]}
            prev["req"] = list(s_req)
            prev["err"] = list(s_err)
            self.timeline.append(row)
            self.pending.append(len(heap))
            if progress is not None:
                progress(now)
            if now + interval <= duration:
                at(now + interval, sample)

        self._at = at
        self._extra = s_extra
        self._s_held = s_held
        for event in config.chaos:
            at(event.at, self._chaos_action(event))
        for n, spec in enumerate(self.model.services):
            if spec.autoscale is not None:
                at(spec.autoscale.interval, self._autoscaler(n, spec.autoscale))
        at(interval, sample)
        push(heap, (duration, seq(), END, None, 0, 0, 0, 0.0))
        push(heap, (rng.expovariate(rate), seq(), GEN, None, 0, 0, 0, 0.0))

        while True:
            if tq and tq[0][0] <= heap[0][0]:
                now, call, att = tq.popleft()
                if call[ATT] != att or call[FIN]:
                    continue
                inst = call[INST]
                if use_breakers and inst >= 0:
                    record(call[EDGE], inst, False, now)
                if inst >= 0 and not i_alive[inst]:
                    s_err[i_svc[inst]] += 1  # lost at a dead instance
                failed(call, att, now, True)
                continue
            now, _, kind, call, att, code, inst, arr = pop(heap)
            if kind == REPLY:
                replies += 1
                s = i_svc[inst]
                if code != REFUSED:
                    if not i_alive[inst]:
                        continue  # the instance died with the request: lost
                    i_held[inst] -= 1
                    s_held[s] -= 1
                    s_done[s] += 1
                    s_soj[s] += now - arr
                    if code != OK:
                        s_err[s] += 1
                if call[ATT] != att or call[FIN]:
                    continue  # an attempt that timed out already
                k = int((now - call[SENT]) * 1e5)
                hist = s_hist[s]
                hist[k] = hist.get(k, 0) + 1
                if use_breakers:
                    if code in (OK, ERROR):
                        if open_count[call[EDGE]] or breakers[call[EDGE]]:
                            record(call[EDGE], inst, True, now)
                    else:
                        record(call[EDGE], inst, False, now)
                if code == OK:
                    job = call[PARENT]
                    if job is None or call[TRACE] is not None:
                        finish(call, True, now)
                        continue
                    # finish(call, True, now) and answer(job, now), inline: the common path
                    call[FIN] = True
                    e = call[EDGE]
                    e_calls[e] += 1
                    e_lat[e] += now - call[T0]
                    pend = job[J_PEND] - 1
                    job[J_PEND] = pend
                    if pend == 0:
                        inst = job[J_INST]
                        if i_alive[inst]:
                            call = job[J_CALL]
                            zone = call[ZONE]
                            iz = i_zone[inst]
                            if not blocked or (iz, zone) not in blocked:
                                push(heap, (now + latency[iz * nz + zone], seq(), REPLY, call,
                                            job[J_ATT], BAD_GATEWAY if job[J_FAIL] else OK,
                                            inst, job[J_ARR]))
                elif code == ERROR:
                    finish(call, False, now)
                else:
                    failed(call, att, now, False)
            elif kind == DONE:
                if not i_alive[inst]:
                    continue
                if call[ATT] == att and not call[FIN]:
                    # spawn(call, att, inst, arr, now), inline
                    options = plans[i_svc[inst]]
                    plan = options[int(rnd() * len(options))] if len(options) > 1 else options[0]
                    zone = i_zone[inst]
                    trace = call[TRACE]
                    job = [call, att, inst, arr, 0, False, None]
                    waits = 0
                    for e in plan:
                        sync = e_kind[e] == 0
                        child = [job if sync else None, e, 0, -1, now, False, now, zone,
                                 None if trace is None else (trace[0], span_ids(), trace[1])]
                        if sync:
                            waits += 1
                        send(child, now)
                    job[J_PEND] += waits
                    if not waits:
                        answer(job, now)
                else:  # the caller gave up on this attempt: answer at once, unheard
                    push(heap, (now + latency[i_zone[inst] * nz + call[ZONE]], seq(), REPLY,
                                call, att, OK, inst, arr))
            elif kind == RETRY:
                if not call[FIN]:
                    send(call, now)
            elif kind == GEN:
                root(now)
                push(heap, (now + rng.expovariate(rate), seq(), GEN, None, 0, 0, 0, 0.0))
            elif kind == MISC:
                call(now)
                s_extra_any = any(s_extra)
            else:
                break
        self.messages = sum(s_req) + replies
        self.root_count = n_root

    # -- discovery, chaos, autoscaling and pushes ----------------------------------------------

    def _propagate(self, now: float, svc: int, added: list[int], removed: set[int],
                   delay: float | None = None) -> None:
        """Apply a change of ``svc``'s instances to every zone registry of their region after
        the refresh (own zone) or replication (other zones) delay; ``delay`` adds to both."""
        disc = self.config.discovery
        by_region: dict[int, tuple[list[int], set[int]]] = {}
        for inst in added:
            by_region.setdefault(self.i_zone[inst] // 3, ([], set()))[0].append(inst)
        for inst in removed:
            by_region.setdefault(self.i_zone[inst] // 3, ([], set()))[1].add(inst)
        extra = delay or 0.0
        for region, (add, rem) in sorted(by_region.items()):
            own = {self.i_zone[i] for i in add} | {self.i_zone[i] for i in rem}
            for zone in range(region * 3, region * 3 + 3):
                when = now + extra + (disc.refresh if zone in own else disc.replication)
                self._at(when, self._apply(zone, svc, add, rem))

    def _apply(self, zone: int, svc: int, add: list[int], rem: set[int]) -> Callable[[float], None]:
        def apply(now: float) -> None:
            i_zone = self.i_zone
            current = self.reg_all[zone][svc]
            fresh = [i for i in current if i not in rem] if rem else list(current)
            fresh.extend(i for i in add if i not in current)
            self.reg_all[zone][svc] = fresh
            self.reg_local[zone][svc] = [i for i in fresh if i_zone[i] == zone]
        return apply

    def _kill(self, insts: list[int], now: float) -> None:
        by_svc: dict[int, set[int]] = {}
        for inst in insts:
            if not self.i_alive[inst]:
                continue
            self.i_alive[inst] = False
            s = self.i_svc[inst]
            self.alive_count[s] -= 1
            self.alive_zone[s][self.i_zone[inst]] -= 1
            self._s_held[s] -= self.i_held[inst]
            self.i_held[inst] = 0
            by_svc.setdefault(s, set()).add(inst)
        for s, dead in sorted(by_svc.items()):
            self._propagate(now, s, [], dead, self.config.discovery.eviction)

    def _alive(self, svc: int) -> list[int]:
        return [i for i, s in enumerate(self.i_svc) if s == svc and self.i_alive[i]]

    def _chaos_action(self, event: ChaosEvent) -> Callable[[float], None]:
        def act(now: float) -> None:
            self.log.append(f"{now:.3f} {event.action}")
            if event.action == "kill_instance":
                live = self._alive(self.svc_index[event.service])
                self.rng.shuffle(live)
                self._kill(sorted(live[:event.count]), now)
            elif event.action == "kill_zone":
                zone = self.zones.index(event.zone)
                self.dead_zones.add(zone)
                self.live_zones[:] = [z for z in self.live_zones if z != zone]
                self._kill([i for i, z in enumerate(self.i_zone) if z == zone], now)
            elif event.action == "kill_region":
                region = self.regions.index(event.region)
                zones = set(range(region * 3, region * 3 + 3))
                self.dead_zones.update(zones)
                self.live_zones[:] = [z for z in self.live_zones if z not in zones]
                self._kill([i for i, z in enumerate(self.i_zone) if z in zones], now)
            elif event.action == "latency":
                targets = ([self.svc_index[event.service]] if event.service
                           else range(len(self.svc_names)))
                for s in targets:
                    self._extra[s] += event.add_ms / 1000
                if event.duration != math.inf:
                    def heal(_now: float) -> None:
                        for s in targets:
                            self._extra[s] -= event.add_ms / 1000
                    self._at(now + event.duration, heal)
            elif event.action == "partition":
                ids = [self.zones.index(z) for z in event.zones]
                pairs = {(a, b) for a in ids for b in ids if a != b}
                self.blocked.update(pairs)
                if event.duration != math.inf:
                    self._at(now + event.duration, lambda _now: self.blocked.difference_update(
                        pairs))
            elif event.action == "push":
                self._push(event, now)
        return act

    def _launch(self, svc: int, cost: int, count: int, now: float,
                startup: float | None = None) -> list[int]:
        """Start ``count`` instances of ``svc``, each in the zone of its region with the fewest;
        they register once started."""
        spec = self.model.services[svc]
        zones = [z for r in spec.regions for z in range(self.regions.index(r) * 3,
                                                          self.regions.index(r) * 3 + 3)
                 if z not in self.dead_zones]
        new = []
        for _ in range(count if zones else 0):
            zone = min(zones, key=lambda z: (self.alive_zone[svc][z], z))
            new.append(self._new_instance(svc, zone, cost, now))
        if new:
            self._propagate(now, svc, new, set(),
                            self.config.startup if startup is None else startup)
        return new

    def _retire(self, insts: list[int], now: float) -> None:
        """Deregister, then stop once callers have stopped sending (replication + timeout)."""
        if not insts:
            return
        svc = self.i_svc[insts[0]]
        self._propagate(now, svc, [], set(insts))
        drain = self.config.discovery.replication + self.config.discovery.refresh + \
            self.config.calls.timeout
        self._at(now + drain, lambda t: self._kill_quiet(insts, t))

    def _kill_quiet(self, insts: list[int], now: float) -> None:
        for inst in insts:
            if self.i_alive[inst]:
                self.i_alive[inst] = False
                s = self.i_svc[inst]
                self.alive_count[s] -= 1
                self.alive_zone[s][self.i_zone[inst]] -= 1
                self._s_held[s] -= self.i_held[inst]
                self.i_held[inst] = 0

    def _push(self, event: ChaosEvent, now: float) -> None:
        svc = self.svc_index[event.service]
        base = self.costs[self.svc_cost[svc]]
        cost = replace(
            base,
            latency=base.latency if event.latency_ms is None else event.latency_ms / 1000,
            error_rate=base.error_rate if event.error_rate is None else event.error_rate)
        cost_id = self._cost(cost, event.version)
        old = [i for i in self._alive(svc) if self.i_cost[i] != cost_id]
        per_wave = math.ceil(len(old) / event.waves) if old else 0

        def wave(number: int) -> Callable[[float], None]:
            def run(t: float) -> None:
                batch = old[number * per_wave:(number + 1) * per_wave]
                batch = [i for i in batch if self.i_alive[i]]
                self.log.append(f"{t:.3f} push {event.service} v{event.version} wave "
                                f"{number + 1}/{event.waves}: {len(batch)} instances")
                self._launch(svc, cost_id, len(batch), t)
                self._retire(batch, t + self.config.startup)
            return run

        for n in range(event.waves):
            self._at(now + n * event.interval, wave(n))

    def _autoscaler(self, svc: int, policy: Any) -> Callable[[float], None]:
        last = [0.0]

        def check(now: float) -> None:
            busy = self.s_busy[svc] - last[0]
            last[0] = self.s_busy[svc]
            live = self.alive_count[svc]
            workers = self.costs[self.svc_cost[svc]].workers
            util = busy / (max(live, 1) * workers * policy.interval)
            if util > policy.target * 1.2 and live < policy.maximum:
                add = min(policy.maximum - live, max(1, math.ceil(live * (util / policy.target
                                                                          - 1))))
                self.log.append(f"{now:.3f} autoscale {self.svc_names[svc]} +{add} "
                                f"(utilisation {util:.2f})")
                self._launch(svc, self.svc_cost[svc], add, now, policy.startup)
            elif util < policy.target * 0.5 and live > policy.minimum:
                remove = min(live - policy.minimum, max(1, int(live * (1 - util / policy.target)
                                                               / 2)))
                victims = sorted(self._alive(svc), reverse=True)[:remove]
                self.log.append(f"{now:.3f} autoscale {self.svc_names[svc]} -{remove} "
                                f"(utilisation {util:.2f})")
                self._retire(victims, now)
            self._at(now + policy.interval, check)
        return check
