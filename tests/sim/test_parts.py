"""The parts of a run on their own: the breakers of each edge, and the fleet's stops."""

from __future__ import annotations

from setpiece.http import BreakerPolicy
from setpiece.sim import Call, Discovery, Model, ServiceSpec, SimConfig, Simulation
from setpiece.sim.breakers import CLOSED, HALF_OPEN, OPEN, Breakers
from setpiece.sim.fleet import Action, Fleet


def test_a_pair_that_never_failed_has_no_breaker() -> None:
    breakers = Breakers(BreakerPolicy(), edges=2)
    breakers.record(0, 7, True, 1.0)
    assert breakers.tables == [{}, {}] and breakers.open == [0, 0]


def test_a_breaker_opens_then_lets_one_probe_through_after_its_cooldown() -> None:
    breakers = Breakers(BreakerPolicy(failures=3, cooldown=5.0), edges=1)
    for t in (1.0, 2.0):
        breakers.record(0, 7, False, t)
    br = breakers.tables[0][7]
    assert br.state == CLOSED and breakers.open == [0]
    breakers.record(0, 7, False, 3.0)
    assert br.state == OPEN and breakers.open == [1]
    assert not breakers.allow(br, 7.9)  # cooling down
    assert breakers.allow(br, 8.0) and br.state == HALF_OPEN  # the one probe
    assert not breakers.allow(br, 8.1)  # nothing more while it is out
    breakers.record(0, 7, False, 8.5)  # the probe failed: open again, from now
    assert br.state == OPEN and breakers.open == [1] and not breakers.allow(br, 13.0)
    assert breakers.allow(br, 13.5)
    breakers.record(0, 7, True, 13.6)  # the probe succeeded: closed, its history forgotten
    assert br.state == CLOSED and breakers.open == [0] and not br.recent


def test_a_failure_rate_opens_a_breaker_without_consecutive_failures() -> None:
    breakers = Breakers(BreakerPolicy(failures=100, failure_rate=0.5, min_calls=4), edges=1)
    for n, ok in enumerate([False, True, False, True]):
        breakers.record(0, 1, ok, float(n))
    assert breakers.tables[0][1].state == CLOSED  # at its last failure, 3 calls: too few
    breakers.record(0, 1, False, 4.0)  # 3 of 5
    assert breakers.tables[0][1].state == OPEN and breakers.open == [1]


def test_choose_skips_open_breakers_and_panics_when_too_many_are_open() -> None:
    draws = iter([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    breakers = Breakers(BreakerPolicy(failures=1, cooldown=60.0, panic_threshold=0.5), edges=1)
    breakers.record(0, 10, False, 0.0)  # 10 open
    # 10 drawn five times, then the first of the region whose breaker lets it through
    assert breakers.choose(0, 10, [10], [10, 11, 12], 1.0, lambda: next(draws)) == 11
    for inst in (11, 12):
        breakers.record(0, inst, False, 0.0)
    # every one open, above the panic threshold: spread over them anyway
    assert breakers.choose(0, 12, [10, 11, 12], [10, 11, 12], 1.0, lambda: 0.5) == 11
    calm = Breakers(BreakerPolicy(failures=1, cooldown=60.0, panic_threshold=0.0), edges=1)
    calm.record(0, 10, False, 0.0)
    assert calm.choose(0, 10, [10], [10], 1.0, lambda: 0.0) == -2  # every instance ejected


def fleet() -> tuple[Simulation, Fleet, list[tuple[float, Action]]]:
    api = ServiceSpec("api", count=6)
    model = Model("fleet", services=(api,), entry=((Call("api"),),))
    sim = Simulation(model, SimConfig(discovery=Discovery(eviction=30.0)))
    scheduled: list[tuple[float, Action]] = []
    return sim, Fleet(sim, lambda when, action: scheduled.append((when, action))), scheduled


def test_a_kill_stops_at_once_and_drops_from_the_registries_after_eviction() -> None:
    sim, fl, scheduled = fleet()
    sim.i_held[0] = sim.s_held[0] = 2
    fl.kill([0, 3], 10.0)
    assert not sim.i_alive[0] and not sim.i_alive[3] and sim.alive_count == [4]
    assert sim.alive_zone[0][:3] == [0, 2, 2] and sim.s_held == [0] and sim.i_held[0] == 0
    assert 0 in sim.reg_all[0][0]  # still listed until the registries hear of it
    assert sorted(when for when, _ in scheduled) == [40.0 + sim.config.discovery.refresh] + \
        [40.0 + sim.config.discovery.replication] * 2
    for when, action in scheduled:
        action(when)
    assert sim.reg_all[0][0] == [1, 2, 4, 5] and sim.reg_local[0][0] == []
    fl.kill([0], 50.0)  # dead already: nothing more
    assert sim.alive_count == [4] and len(scheduled) == 3


def test_a_retirement_deregisters_first_and_stops_once_callers_stopped_sending() -> None:
    sim, fl, scheduled = fleet()
    fl.retire([1], 10.0)
    disc, timeout = sim.config.discovery, sim.config.calls.timeout
    registry, stop = scheduled[:3], scheduled[3]
    assert stop[0] == 10.0 + disc.replication + disc.refresh + timeout
    for when, action in registry:
        action(when)
    assert 1 not in sim.reg_all[0][0] and sim.i_alive[1]  # unlisted, still serving
    stop[1](stop[0])
    assert not sim.i_alive[1] and sim.alive_count == [5] and len(scheduled) == 4
