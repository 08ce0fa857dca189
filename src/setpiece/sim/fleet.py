"""What changes the instances during a run: discovery updates, chaos, code pushes, autoscaling.

Each change is an event of the run's heap (scheduled with ``at``), so it happens at its
simulated time between two messages. Instances are never removed from the columns: a stopped
one is marked dead, and the registries that list it are updated after the discovery delays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from setpiece.sim.chaos import ChaosEvent
from setpiece.sim.model import Autoscale

if TYPE_CHECKING:
    from setpiece.sim.engine import Simulation

__all__ = ["Action", "At", "Fleet", "region_zones"]

Action = Callable[[float], None]  # run at a simulated time
At = Callable[[float, Action], None]  # schedule an action


def region_zones(region: int) -> range:
    """The zone numbers of region number ``region`` (three each)."""
    return range(region * 3, region * 3 + 3)


class Fleet:
    """The changes of ``sim``'s instances, scheduled on its run's heap with ``at``."""

    def __init__(self, sim: Simulation, at: At) -> None:
        self.sim = sim
        self.at = at

    # -- discovery ------------------------------------------------------------------------------

    def propagate(self, now: float, svc: int, added: list[int], removed: set[int],
                  delay: float | None = None) -> None:
        """Apply a change of ``svc``'s instances to every zone registry of their region after
        the refresh (own zone) or replication (other zones) delay; ``delay`` adds to both."""
        sim = self.sim
        disc = sim.config.discovery
        by_region: dict[int, tuple[list[int], set[int]]] = {}
        for inst in added:
            by_region.setdefault(sim.i_zone[inst] // 3, ([], set()))[0].append(inst)
        for inst in removed:
            by_region.setdefault(sim.i_zone[inst] // 3, ([], set()))[1].add(inst)
        extra = delay or 0.0
        for region, (add, rem) in sorted(by_region.items()):
            own = {sim.i_zone[i] for i in add} | {sim.i_zone[i] for i in rem}
            for zone in region_zones(region):
                when = now + extra + (disc.refresh if zone in own else disc.replication)
                self.at(when, self._apply(zone, svc, add, rem))

    def _apply(self, zone: int, svc: int, add: list[int], rem: set[int]) -> Action:
        def apply(now: float) -> None:
            sim = self.sim
            i_zone = sim.i_zone
            current = sim.reg_all[zone][svc]
            fresh = [i for i in current if i not in rem] if rem else list(current)
            fresh.extend(i for i in add if i not in current)
            sim.reg_all[zone][svc] = fresh
            sim.reg_local[zone][svc] = [i for i in fresh if i_zone[i] == zone]
        return apply

    # -- instances ------------------------------------------------------------------------------

    def alive(self, svc: int) -> list[int]:
        sim = self.sim
        return [i for i, s in enumerate(sim.i_svc) if s == svc and sim.i_alive[i]]

    def _stop(self, insts: list[int]) -> dict[int, set[int]]:
        """Mark ``insts`` dead (the requests they hold are lost); the newly dead by service."""
        sim = self.sim
        by_svc: dict[int, set[int]] = {}
        for inst in insts:
            if not sim.i_alive[inst]:
                continue
            sim.i_alive[inst] = False
            s = sim.i_svc[inst]
            sim.alive_count[s] -= 1
            sim.alive_zone[s][sim.i_zone[inst]] -= 1
            sim.s_held[s] -= sim.i_held[inst]
            sim.i_held[inst] = 0
            by_svc.setdefault(s, set()).add(inst)
        return by_svc

    def kill(self, insts: list[int], now: float) -> None:
        """Stop ``insts`` at once; registries drop them after the eviction delay."""
        for s, dead in sorted(self._stop(insts).items()):
            self.propagate(now, s, [], dead, self.sim.config.discovery.eviction)

    def launch(self, svc: int, cost: int, count: int, now: float,
               startup: float | None = None) -> list[int]:
        """Start ``count`` instances of ``svc``, each in the zone of its region with the fewest;
        they register once started."""
        sim = self.sim
        spec = sim.model.services[svc]
        zones = [z for r in spec.regions for z in region_zones(sim.regions.index(r))
                 if z not in sim.dead_zones]
        new = []
        for _ in range(count if zones else 0):
            zone = min(zones, key=lambda z: (sim.alive_zone[svc][z], z))
            new.append(sim.add_instance(svc, zone, cost, now))
        if new:
            self.propagate(now, svc, new, set(), sim.config.startup if startup is None else startup)
        return new

    def retire(self, insts: list[int], now: float) -> None:
        """Deregister, then stop once callers have stopped sending (replication + timeout)."""
        if not insts:
            return
        config = self.sim.config
        self.propagate(now, self.sim.i_svc[insts[0]], [], set(insts))
        drain = config.discovery.replication + config.discovery.refresh + config.calls.timeout

        def stop(_now: float) -> None:
            self._stop(insts)  # quietly: the registries dropped them already
        self.at(now + drain, stop)

    # -- chaos, pushes and autoscaling ----------------------------------------------------------

    def chaos(self, event: ChaosEvent) -> Action:
        """The action of a chaos event (or a code push)."""
        def act(now: float) -> None:
            sim = self.sim
            sim.log.append(f"{now:.3f} {event.action}")
            if event.action == "kill_instance":
                live = self.alive(sim.svc_index[event.service])
                sim.rng.shuffle(live)
                self.kill(sorted(live[:event.count]), now)
            elif event.action in ("kill_zone", "kill_region"):
                zones = ({sim.zones.index(event.zone)} if event.action == "kill_zone"
                         else set(region_zones(sim.regions.index(event.region))))
                sim.dead_zones.update(zones)
                sim.live_zones[:] = [z for z in sim.live_zones if z not in zones]
                self.kill([i for i, z in enumerate(sim.i_zone) if z in zones], now)
            elif event.action == "latency":
                targets = ([sim.svc_index[event.service]] if event.service
                           else range(len(sim.svc_names)))
                for s in targets:
                    sim.s_extra[s] += event.add_ms / 1000
                if event.duration != math.inf:
                    def heal(_now: float) -> None:
                        for s in targets:
                            sim.s_extra[s] -= event.add_ms / 1000
                    self.at(now + event.duration, heal)
            elif event.action == "partition":
                ids = [sim.zones.index(z) for z in event.zones]
                pairs = {(a, b) for a in ids for b in ids if a != b}
                sim.blocked.update(pairs)
                if event.duration != math.inf:
                    self.at(now + event.duration, lambda _now: sim.blocked.difference_update(
                        pairs))
            elif event.action == "push":
                self.push(event, now)
        return act

    def push(self, event: ChaosEvent, now: float) -> None:
        """Roll ``event.version`` of a service out in waves: each wave launches new instances
        and retires as many old ones once the new have started."""
        sim = self.sim
        svc = sim.svc_index[event.service]
        base = sim.costs[sim.svc_cost[svc]]
        cost = replace(
            base,
            latency=base.latency if event.latency_ms is None else event.latency_ms / 1000,
            error_rate=base.error_rate if event.error_rate is None else event.error_rate)
        cost_id = sim.add_cost(cost, event.version)
        old = [i for i in self.alive(svc) if sim.i_cost[i] != cost_id]
        per_wave = math.ceil(len(old) / event.waves) if old else 0

        def wave(number: int) -> Action:
            def run(t: float) -> None:
                batch = old[number * per_wave:(number + 1) * per_wave]
                batch = [i for i in batch if sim.i_alive[i]]
                sim.log.append(f"{t:.3f} push {event.service} v{event.version} wave "
                               f"{number + 1}/{event.waves}: {len(batch)} instances")
                self.launch(svc, cost_id, len(batch), t)
                self.retire(batch, t + sim.config.startup)
            return run

        for n in range(event.waves):
            self.at(now + n * event.interval, wave(n))

    def autoscaler(self, svc: int, policy: Autoscale) -> Action:
        """The check of ``svc``'s utilisation, every ``policy.interval`` seconds."""
        last = [0.0]

        def check(now: float) -> None:
            sim = self.sim
            busy = sim.s_busy[svc] - last[0]
            last[0] = sim.s_busy[svc]
            live = sim.alive_count[svc]
            workers = sim.costs[sim.svc_cost[svc]].workers
            util = busy / (max(live, 1) * workers * policy.interval)
            if util > policy.target * 1.2 and live < policy.maximum:
                add = min(policy.maximum - live, max(1, math.ceil(live * (util / policy.target
                                                                          - 1))))
                sim.log.append(f"{now:.3f} autoscale {sim.svc_names[svc]} +{add} "
                               f"(utilisation {util:.2f})")
                self.launch(svc, sim.svc_cost[svc], add, now, policy.startup)
            elif util < policy.target * 0.5 and live > policy.minimum:
                remove = min(live - policy.minimum, max(1, int(live * (1 - util / policy.target)
                                                               / 2)))
                victims = sorted(self.alive(svc), reverse=True)[:remove]
                sim.log.append(f"{now:.3f} autoscale {sim.svc_names[svc]} -{remove} "
                               f"(utilisation {util:.2f})")
                self.retire(victims, now)
            self.at(now + policy.interval, check)
        return check
