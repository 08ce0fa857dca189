"""Chaos: zones and regions killed, latency, partitions, code pushes, autoscaling, cascades."""

from __future__ import annotations

from setpiece.http import BreakerPolicy, CallPolicy
from setpiece.sim import (
    Autoscale,
    Call,
    Cost,
    Discovery,
    Model,
    ServiceSpec,
    SimConfig,
    Simulation,
    load_spigo,
    parse_chaos,
    simulate,
)
from setpiece.sim.output import report
from tests.sim.conftest import ARCHS

OBJECTIVE = 0.01  # the error-rate objective of the healthy zones


def cascade_model() -> Model:
    """front calls back; both run one instance per zone of one region."""
    back = ServiceSpec("back", count=3, package="store", cost=Cost(latency=0.002))
    front = ServiceSpec("front", count=3, package="karyon",
                        cost=Cost(latency=0.001, max_inflight=20), plans=((Call("back"),),))
    return Model("cascade", services=(back, front), entry=((Call("front"),),))


def cascade_run(breakers: bool) -> dict:
    config = SimConfig(
        duration=40, rate=300, seed=11, breakers=breakers, zone_affinity=0.0,
        calls=CallPolicy(timeout=1.0, retries=2, backoff=0.02,
                         breaker=BreakerPolicy(failures=3, cooldown=5.0)),
        discovery=Discovery(eviction=60.0),  # the dead zone stays listed all run long
        chaos=parse_chaos([{"at": 10, "action": "kill_zone", "zone": "us-east-1a"}]))
    return simulate(cascade_model(), config)


def healthy_error_rate(result: dict) -> float:
    zones = [z for name, z in result["zones"].items() if name != "us-east-1a"]
    requests = sum(z["requests"] for z in zones)
    assert requests > 5000
    return sum(z["errors"] for z in zones) / requests


def test_a_dead_zone_cascades_through_retries_without_breakers() -> None:
    result = cascade_run(breakers=False)
    assert healthy_error_rate(result) > 10 * OBJECTIVE
    assert result["services"]["front"]["refused"] > 1000  # overloaded: slots held by timeouts
    timeouts = sum(e["timeouts"] for e in result["edges"])
    retries = sum(e["retries"] for e in result["edges"])
    assert timeouts > 1000 and retries > 1000


def test_breakers_keep_the_healthy_zones_under_the_objective() -> None:
    result = cascade_run(breakers=True)
    assert healthy_error_rate(result) < OBJECTIVE
    assert result["services"]["front"]["refused"] < 100


def test_without_chaos_nothing_fails() -> None:
    config = SimConfig(duration=20, rate=300, seed=11, zone_affinity=0.0, breakers=False)
    result = simulate(cascade_model(), config)
    assert result["errors"] == 0 and result["requests"] > 5000


def test_kill_region_moves_traffic_to_the_other_region() -> None:
    model = load_spigo(ARCHS / "two_regions_arch.json")
    config = SimConfig(duration=20, seed=1, chaos=parse_chaos(
        [{"at": 5, "action": "kill_region", "region": "us-east-1"}]))
    sim = Simulation(model, config)
    sim.run()
    result = report(sim)
    assert result["zones"]["us-west-2a"]["requests"] > result["zones"]["us-east-1a"]["requests"]
    assert result["services"]["api"]["instances"] == 3  # those of us-west-2
    assert result["errors"] < 0.05 * result["requests"]
    assert "5.000 kill_region" in result["log"]


def test_added_latency_shows_in_percentiles_and_ends() -> None:
    model = load_spigo(ARCHS / "shop_arch.json")
    base = simulate(model, SimConfig(duration=20, rate=60, seed=2))
    slow = simulate(model, SimConfig(duration=20, rate=60, seed=2, chaos=parse_chaos(
        [{"at": 0, "action": "latency", "service": "db", "add_ms": 10, "duration": 10}])))
    assert slow["services"]["db"]["p99_ms"] > base["services"]["db"]["p99_ms"] + 5
    assert slow["errors"] == 0
    late = [row["services"]["db"] for row in slow["timeline"] if row["t"] > 12]
    early = [row["services"]["db"] for row in slow["timeline"] if row["t"] < 9]
    assert sum(r["in_flight"] for r in late) < sum(r["in_flight"] for r in early)


def test_a_partition_between_zones_fails_cross_zone_calls_only_while_it_lasts() -> None:
    model = load_spigo(ARCHS / "two_regions_arch.json")
    spec = [{"at": 2, "action": "partition", "zones": ["us-east-1a", "us-east-1b"],
             "duration": 4}]
    config = SimConfig(duration=20, seed=4, zone_affinity=0.0, breakers=False,
                       chaos=parse_chaos(spec))
    result = simulate(model, config)
    assert sum(e["timeouts"] for e in result["edges"]) > 0
    errors = [sum(s["errors"] for s in row["services"].values()) for row in result["timeline"]]
    times = [row["t"] for row in result["timeline"]]
    assert sum(e for e, t in zip(errors, times, strict=True) if t > 9) == 0


def test_a_code_push_replaces_instances_in_waves() -> None:
    model = load_spigo(ARCHS / "shop_arch.json")
    spec = [{"at": 2, "action": "push", "service": "web", "version": "2", "waves": 3,
             "interval": 5, "latency_ms": 1}]
    sim = Simulation(model, SimConfig(duration=30, seed=5, chaos=parse_chaos(spec)))
    sim.run()
    web = sim.svc_index["web"]
    live = [i for i, s in enumerate(sim.i_svc) if s == web and sim.i_alive[i]]
    assert len(live) == 6
    assert {sim.cost_version[sim.i_cost[i]] for i in live} == {"2"}
    waves = [line for line in sim.log if "push web v2 wave" in line]
    assert [w.split()[0] for w in waves] == ["2.000", "7.000", "12.000"]
    result = report(sim)
    assert result["errors"] == 0  # graceful: deregistered before stopped


def test_autoscaling_adds_instances_under_load() -> None:
    api = ServiceSpec("api", count=3, cost=Cost(latency=0.01),
                      autoscale=Autoscale(target=0.5, interval=5, startup=2, maximum=30))
    model = Model("scaling", services=(api,), entry=((Call("api"),),))
    sim = Simulation(model, SimConfig(duration=60, rate=240, seed=6))  # 80 % busy at first
    sim.run()
    counts = [row["services"]["api"]["instances"] for row in sim.timeline]
    assert counts[0] == 3 and counts[-1] > 4
    assert any("autoscale api +" in line for line in sim.log)


def test_a_simulation_runs_once() -> None:
    import pytest

    sim = Simulation(cascade_model(), SimConfig(duration=1, rate=10))
    sim.run()
    with pytest.raises(RuntimeError, match="runs once"):
        sim.run()
