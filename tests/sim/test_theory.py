"""The simulator against queueing theory: M/M/1 and Little's law."""

from __future__ import annotations

import pytest

from setpiece.http import CallPolicy
from setpiece.sim import Call, Cost, Model, Network, ServiceSpec, SimConfig, load_spigo, simulate
from tests.sim.conftest import ARCHS

NO_NETWORK = Network(zone=0.0, cross_zone=0.0, cross_region=0.0)


def mm1(rate: float, mean_service: float) -> Model:
    server = ServiceSpec("server", count=1, package="store",
                         cost=Cost(latency=mean_service, max_inflight=1_000_000))
    return Model("mm1", services=(server,), entry=((Call("server"),),))


@pytest.mark.parametrize("utilisation", [0.5, 0.7])
def test_mm1_mean_latency_matches_theory_within_5_percent(utilisation: float) -> None:
    mean_service = 0.001
    rate = utilisation / mean_service
    config = SimConfig(duration=250_000 / rate, rate=rate, seed=7, network=NO_NETWORK,
                       calls=CallPolicy(timeout=1e9, retries=0))
    result = simulate(mm1(rate, mean_service), config)
    server = result["services"]["server"]
    theory_ms = 1000 / (1 / mean_service - rate)  # W = 1 / (mu - lambda)
    assert server["errors"] == 0
    assert server["requests"] > 200_000
    assert server["mean_sojourn_ms"] == pytest.approx(theory_ms, rel=0.05)
    # what the caller sees is the same (no network), through the edge's own bookkeeping
    (edge,) = result["edges"]
    assert edge["mean_ms"] == pytest.approx(theory_ms, rel=0.05)


def test_mm1_is_not_matched_by_a_wrong_model() -> None:
    """The check above can fail: constant service times (M/D/1) wait half as long."""
    rate, mean_service = 700.0, 0.001
    model = mm1(rate, mean_service)
    constant = Model("md1", services=(ServiceSpec(
        "server", count=1, cost=Cost(latency=mean_service, distribution="constant",
                                     max_inflight=1_000_000)),), entry=model.entry)
    config = SimConfig(duration=100_000 / rate, rate=rate, seed=7, network=NO_NETWORK,
                       calls=CallPolicy(timeout=1e9, retries=0))
    server = simulate(constant, config)["services"]["server"]
    mm1_ms = 1000 / (1 / mean_service - rate)
    md1_ms = 1000 * (mean_service + rate * mean_service ** 2 / (2 * (1 - rate * mean_service)))
    assert server["mean_sojourn_ms"] == pytest.approx(md1_ms, rel=0.05)
    assert server["mean_sojourn_ms"] < 0.7 * mm1_ms


def test_littles_law_holds_on_every_service() -> None:
    """L (the in-flight count sampled every 5 ms) = lambda (answered per second) x W (mean
    time from sending a request to its reply), for every service of a larger run."""
    duration = 40.0
    model = load_spigo(ARCHS / "shop_arch.json", scale=2)
    result = simulate(model, SimConfig(duration=duration, seed=3, sample_interval=0.005))
    timeline = result["timeline"]
    assert len(timeline) > 7000
    for name, service in result["services"].items():
        answered = sum(row["services"][name]["requests"] for row in timeline)
        assert answered > 10_000, name
        sampled_l = sum(row["services"][name]["in_flight"] for row in timeline) / len(timeline)
        rate = (service["requests"] - service["refused"]) / duration
        little_l = rate * service["mean_sojourn_ms"] / 1000
        assert sampled_l == pytest.approx(little_l, rel=0.05), name
