"""The discrete-event loop of a run: calls, queues, replies, timeouts and retries.

Time is simulated: one ``heapq`` of ``(time, seq, kind, call, attempt, code, instance,
arrival)`` and one FIFO of deadlines (every call has the same timeout, so deadlines come in the
order calls are sent and need no heap). ``seq`` breaks ties, so a run is a function of its
model, config and seed.

A request waits in its instance's FIFO queue: with one worker the time it starts is
``max(arrival, free)`` and its end is known when it arrives (Lindley's recursion), so a leaf's
reply is one event.

This is the hot path: everything the loop reads is bound to a local first, and its helpers are
closures over those locals (no attribute look-up on the way). The rare events — discovery
updates, chaos, pushes, autoscaling — are :class:`~setpiece.sim.fleet.Fleet`'s, scheduled on
the same heap.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from setpiece.sim.breakers import Breakers
from setpiece.sim.fleet import Action, Fleet

if TYPE_CHECKING:
    from setpiece.sim.engine import Simulation

__all__ = ["run"]

# event kinds (ints compare fast; ties are broken by seq before the kind is looked at)
DONE, REPLY, RETRY, GEN, MISC, END = range(6)
# call record fields (a list per call; ``INST`` is the instance of the latest attempt)
PARENT, EDGE, ATT, INST, SENT, FIN, T0, ZONE, TRACE = range(9)
# job record fields (a list per request that an instance handles with calls of its own)
J_CALL, J_ATT, J_INST, J_ARR, J_PEND, J_FAIL, J_SPAN = range(7)
# reply codes
OK, ERROR, REFUSED, BAD_GATEWAY = 200, 500, 503, 502


def run(sim: Simulation, progress: Callable[[float], None] | None) -> None:
    """Run ``sim`` to its end; its counters hold the results."""
    config = sim.config
    duration = config.duration
    rate = config.rate or sim.default_rate()
    sim.rate = rate
    rng = sim.rng
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
    use_breakers = config.breakers
    affinity = config.zone_affinity
    latency = sim.latency
    nz = sim.nz
    edges = sim.edges
    e_dst = [e[1] for e in edges]
    e_kind = [0 if e[2] == "sync" else 1 if e[2] == "async" else 2 for e in edges]
    e_parts = [e[4] for e in edges]
    e_retry = sim.edge_retry
    # the callee answers at once (a leaf call, or a service that calls nobody)
    e_ends = [e[3] or not sim.plans[e[1]] for e in edges]
    # the instance is picked from the caller's zone, with no more to decide
    e_local = [k != 2 and affinity >= 1.0 for k in e_kind]
    e_calls, e_errors, e_retries = sim.e_calls, sim.e_errors, sim.e_retries
    e_timeouts, e_lat = sim.e_timeouts, sim.e_lat
    breakers = Breakers(policy.breaker, len(edges))
    tables, open_count = breakers.tables, breakers.open
    choose, record = breakers.choose, breakers.record
    plans = sim.plans
    entry = sim.entry
    c_mean, c_dist, c_err = sim.c_mean, sim.c_dist, sim.c_err
    c_workers, c_max = sim.c_workers, sim.c_max
    s_req, s_err, s_refused, s_done = sim.s_req, sim.s_err, sim.s_refused, sim.s_done
    s_soj, s_held, s_busy, s_hist = sim.s_soj, sim.s_held, sim.s_busy, sim.s_hist
    s_extra = sim.s_extra  # added processing latency (chaos)
    i_svc, i_zone, i_cost, i_alive = sim.i_svc, sim.i_zone, sim.i_cost, sim.i_alive
    i_free, i_held = sim.i_free, sim.i_held
    reg_all, reg_local = sim.reg_all, sim.reg_local
    blocked = sim.blocked
    root_zone_req, root_zone_err = sim.root_zone_req, sim.root_zone_err
    root_lat = sim.root_lat
    roots = sim.roots  # requests, errors
    live_zones = sim.live_zones
    trace_every = config.trace_every
    span_ids = itertools.count(1).__next__
    spans = sim.spans
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
            return choose(e, inst, lst, reg_all[zone][s], now, rnd)
        return inst

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

    def at(when: float, fn: Action) -> None:
        push(heap, (when, seq(), MISC, fn, 0, 0, 0, 0.0))

    interval = config.sample_interval or duration / 100
    prev = {"req": [0] * len(s_req), "err": [0] * len(s_err)}

    def sample(now: float) -> None:
        services: dict[str, Any] = {}
        row = {"t": round(now, 6), "services": services}
        for s, name in enumerate(sim.svc_names):
            services[name] = {
                "instances": sim.alive_count[s], "in_flight": s_held[s],
                "requests": s_req[s] - prev["req"][s], "errors": s_err[s] - prev["err"][s]}
        prev["req"] = list(s_req)
        prev["err"] = list(s_err)
        sim.timeline.append(row)
        sim.pending.append(len(heap))
        if progress is not None:
            progress(now)
        if now + interval <= duration:
            at(now + interval, sample)

    fleet = Fleet(sim, at)
    for event in config.chaos:
        at(event.at, fleet.chaos(event))
    for n, spec in enumerate(sim.model.services):
        if spec.autoscale is not None:
            at(spec.autoscale.interval, fleet.autoscaler(n, spec.autoscale))
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
                    if open_count[call[EDGE]] or tables[call[EDGE]]:
                        record(call[EDGE], inst, True, now)
                else:
                    record(call[EDGE], inst, False, now)
            if code == OK:
                job = call[PARENT]
                if job is None or call[TRACE] is not None:
                    finish(call, True, now)
                    continue
                # finish(call, True, now) and answer(job, now), inline: the common path. Calling
                # finish() here instead costs about 3% more instructions per message (valgrind,
                # netflixoss at 1,000 instances), calling answer() about 1%
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
                # the instance makes its own calls (one plan, in parallel)
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
    sim.messages = sum(s_req) + replies
    sim.root_count = n_root

