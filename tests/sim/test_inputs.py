"""Inputs: Spigo's architecture files, the project's own fixtures, stacks, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from setpiece.errors import ConfigError
from setpiece.sim import SimConfig, load_chaos, load_spigo, parse_chaos, simulate
from setpiece.sim.engine import Simulation
from setpiece.sim.stack import from_stack
from tests.sim import shop_stack
from tests.sim.conftest import ARCHS, SPIGO_FILES

needs_spigo = pytest.mark.skipif(not SPIGO_FILES, reason="../shared/spigo is not there")


@needs_spigo
@pytest.mark.parametrize("path", SPIGO_FILES, ids=lambda p: p.name)
def test_every_spigo_architecture_loads_and_runs(path: Path) -> None:
    model = load_spigo(path)
    result = simulate(model, SimConfig(duration=2, seed=1))
    assert result["instances"] == model.instances > 0
    assert result["requests"] > 0 and result["messages"] > result["requests"]
    assert result["errors"] == 0
    declared = json.loads(path.read_text())["services"]
    placed = {s["name"] for s in declared if s.get("count") and s.get("regions", 1)}
    assert set(result["services"]) == placed


@needs_spigo
def test_netflixoss_scales() -> None:
    path = next(p for p in SPIGO_FILES if p.name == "netflixoss_arch.json")
    assert load_spigo(path).instances == 63
    assert load_spigo(path, scale=100).instances == 6300


def test_own_fixture_folds_managed_pieces_and_marks_replica_calls() -> None:
    model = load_spigo(ARCHS / "shop_arch.json")
    assert [c.target for plan in model.entry for c in plan] == ["proxy"]
    assert set(model.managed) == {"elb", "www"}
    proxy = model.service("proxy")
    assert sorted(c.target for plan in proxy.plans for c in plan) == ["cart", "web"]
    assert len(proxy.plans) == 2  # zuul routes each request to one of them
    catalog = model.service("catalog")
    assert [[c.target for c in plan] for plan in catalog.plans] == [["cache", "db"]]
    (db_plan,) = model.service("db").plans
    assert [(c.target, c.leaf) for c in db_plan] == [("db", True)]  # a replica write


def test_a_stack_is_simulated_with_its_own_patterns_streams_and_calls() -> None:
    model = from_stack(shop_stack.stack, shop_stack.COSTS)
    result = simulate(model, SimConfig(duration=5, seed=1))
    services = result["services"]
    placed = services["orders.place"]["requests"]
    assert placed > 1000
    # the rule's pattern matches OrderPlaced: both consumer groups of the stream get each one
    assert services["analytics.count"]["requests"] == pytest.approx(placed, rel=0.01)
    assert services["billing.reconcile"]["requests"] == pytest.approx(placed, rel=0.01)
    # the handler's pattern matches (express: true) and the other handler's does not
    assert services["shipping.ship_express"]["requests"] == pytest.approx(placed, rel=0.01)
    assert services["shipping.cancel"]["requests"] == 0
    # ctx.call: every order charges once, on top of the outside traffic of the charges route
    assert services["billing.charge"]["requests"] > placed
    assert model.service("orders.place").count == 6
    kinds = {(e["source"], e["target"]): e["kind"] for e in result["edges"]}
    assert kinds[("orders.place", "analytics.count")] == "stream"
    assert kinds[("orders.place", "shipping.ship_express")] == "async"


def test_an_event_that_matches_nothing_changes_the_route() -> None:
    costs = json.loads(json.dumps(shop_stack.COSTS))
    costs["nodes"]["orders.place"]["emits"] = [{"source": "shop", "type": "OrderPlaced",
                                                "data": {"express": False}}]
    model = from_stack(shop_stack.stack, costs)
    targets = {c.target for plan in model.service("orders.place").plans for c in plan}
    assert "shipping.ship_express" not in targets
    assert "analytics.count" in targets


@pytest.mark.parametrize(("name", "message"), [
    ("invalid_json_arch.json", "not valid JSON"),
    ("unknown_dependency_arch.json", "service 'api': depends on unknown service 'ledger'"),
    ("no_such_arch.json", "no such architecture file"),
])
def test_bad_architecture_files_are_named_with_their_mistake(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_spigo(ARCHS / name)
    assert name in str(info.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"services": []}, "'arch': missing"),
    ({"arch": "x", "services": [{"name": "a", "count": -1}]}, "count must be >= 0"),
    ({"arch": "x", "services": [{"name": "a", "count": "3"}]}, "'count' must be int"),
    ({"arch": "x", "services": [{"name": "a"}, {"name": "a"}]}, "declared twice"),
])
def test_bad_architecture_fields(data: dict, message: str) -> None:
    from setpiece.sim import from_spigo

    with pytest.raises(ConfigError, match=message):
        from_spigo(data)


@pytest.mark.parametrize(("spec", "message"), [
    ([{"at": 1, "action": "explode"}], r"events\[0\]\.action: 'explode' is not one of"),
    ([{"at": 1, "action": "kill_zone"}], r"events\[0\] \(kill_zone\): missing \['zone'\]"),
    ([{"action": "kill_zone", "zone": "us-east-1a"}], "missing 'at'"),
    ([{"at": -1, "action": "kill_zone", "zone": "us-east-1a"}], r"events\[0\]\.at: must be"),
    ([{"at": 1, "action": "kill_zone", "zone": "z", "colour": 1}], "unknown field"),
    ({"evnts": []}, "unknown key"),
    ([{"at": 1, "action": "push", "service": "web", "version": "2", "waves": 0}], "waves"),
])
def test_bad_chaos_specs(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_chaos(spec)


def test_chaos_names_must_exist_in_the_architecture(tmp_path: Path) -> None:
    model = load_spigo(ARCHS / "shop_arch.json")
    for event, message in [
        ({"at": 1, "action": "kill_zone", "zone": "eu-west-1a"}, "unknown zone 'eu-west-1a'"),
        ({"at": 1, "action": "kill_instance", "service": "nope"}, "unknown service 'nope'"),
        ({"at": 1, "action": "kill_region", "region": "mars-1"}, "unknown region 'mars-1'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Simulation(model, SimConfig(chaos=parse_chaos([event])))
    spec = tmp_path / "chaos.json"
    spec.write_text("{not json")
    with pytest.raises(ConfigError, match=r"chaos spec .*chaos.json: not valid JSON"):
        load_chaos(spec)


@pytest.mark.parametrize(("costs", "message"), [
    ({"nodes": {"orders.nope": {}}}, "unknown node 'orders.nope'"),
    ({"nodes": {"orders.place": {"calls": ["ledger.write"]}}},
     "unknown dependency 'ledger.write'"),
    ({"services": {"payments": {}}}, "unknown service 'payments'"),
    ({"nodes": {"orders.place": {"latency_ms": "fast"}}}, "latency_ms: must be a number"),
    ({"nodes": {"orders.place": {"emits": [{"type": "X"}]}}}, "not a valid event"),
    ({"entry": ["orders.nope"]}, "unknown node 'orders.nope'"),
    ({"colour": 1}, "unknown key"),
])
def test_bad_cost_models(costs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_stack(shop_stack.stack, costs)


@pytest.mark.parametrize(("load", "name", "text", "message"), [
    ("chaos", "chaos.json", None, r"^chaos spec \S*chaos.json: no such file$"),
    ("chaos", "chaos.json", "[1,", r"^chaos spec \S*chaos.json: not valid JSON \("),
    ("costs", "costs.json", None, r"^cost model \S*costs.json: no such file$"),
    ("costs", "costs.json", "{", r"^cost model \S*costs.json: not valid JSON \("),
    ("costs", "costs.json", "[]", r"^cost model \S*costs.json: must be a JSON object$"),
    ("spigo", "x_arch.json", None, r"^\S*x_arch.json: no such architecture file$"),
    ("spigo", "x_arch.json", b"\xff\xfe", r"^\S*x_arch.json: not valid JSON \("),
])
def test_unreadable_input_files_are_named_with_what_is_wrong(
        tmp_path: Path, load: str, name: str, text: str | bytes | None, message: str) -> None:
    from setpiece.sim.stack import load_costs

    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    reader = {"chaos": load_chaos, "costs": load_costs, "spigo": load_spigo}[load]
    with pytest.raises(ConfigError, match=message):
        reader(path)


def test_a_call_loop_is_named_from_where_it_starts() -> None:
    from setpiece.sim import Call, Model, ServiceSpec

    a = ServiceSpec("a", count=1, plans=((Call("b"),),))
    b = ServiceSpec("b", count=1, plans=((Call("c"), Call("a", leaf=True)),))
    c = ServiceSpec("c", count=1, plans=((Call("b"),),))
    with pytest.raises(ConfigError, match=r"the calls loop \(b -> c -> b\)"):
        Model("loop", services=(a, b, c), entry=((Call("a"),),))


def test_break_cycles_marks_only_the_calls_that_close_a_loop() -> None:
    from setpiece.sim import Call, ServiceSpec
    from setpiece.sim.model import break_cycles

    services = [
        ServiceSpec("a", count=1, plans=((Call("b"), Call("c")),)),
        ServiceSpec("b", count=1, plans=((Call("c"),),)),
        ServiceSpec("c", count=1, plans=((Call("a"), Call("c")),)),  # back to a, and itself
        ServiceSpec("d", count=1, plans=((Call("e"),),)),  # not reached from the root
        ServiceSpec("e", count=1, plans=((Call("d"),),)),
    ]
    fixed = {s.name: s for s in break_cycles(services, ["a"])}
    leaves = {(name, c.target) for name, s in fixed.items() for plan in s.plans for c in plan
              if c.leaf}
    assert leaves == {("c", "a"), ("c", "c"), ("e", "d")}
    plain = [ServiceSpec("a", count=1, plans=((Call("b"),),)), ServiceSpec("b", count=1)]
    assert break_cycles(plain, ["a"]) is plain  # no loop: unchanged


def test_a_call_loop_is_refused_unless_a_call_closes_it() -> None:
    from setpiece.sim import Call, Model, ServiceSpec

    a = ServiceSpec("a", count=1, plans=((Call("b"),),))
    b = ServiceSpec("b", count=1, plans=((Call("a"),),))
    with pytest.raises(ConfigError, match="the calls loop"):
        Model("loop", services=(a, b), entry=((Call("a"),),))
    b_leaf = ServiceSpec("b", count=1, plans=((Call("a", leaf=True),),))
    Model("loop", services=(a, b_leaf), entry=((Call("a"),),))


def test_a_stacks_call_policy_and_delivery_retries_are_used() -> None:
    from setpiece import CallPolicy, RetryPolicy, Stack
    from setpiece.sim import Call, Cost, Model, ServiceSpec

    policy = CallPolicy(timeout=0.5, retries=0)
    stack = Stack("shop", services=list(shop_stack.stack.services.values()),
                  buses=[shop_stack.bus], streams=[shop_stack.ledger], calls=policy)
    model = from_stack(stack, shop_stack.COSTS)
    assert model.calls is policy
    plan = model.service("orders.place").plans[0]
    retries = {c.target: c.retry for c in plan}
    assert retries["billing.charge"] is None  # ctx.call: the call policy's retries
    assert retries["shipping.ship_express"] == RetryPolicy()  # the handler's (default)

    # an event delivery's RetryPolicy drives its retries: one attempt and no retry at all
    sink = ServiceSpec("sink", count=1, cost=Cost(latency=0.01, max_inflight=1))
    for attempts, retried in ((1, False), (3, True)):
        model = Model("retries", services=(sink,), entry=((Call(
            "sink", kind="async", retry=RetryPolicy(max_attempts=attempts, jitter=0)),),))
        result = simulate(model, SimConfig(duration=5, rate=300, seed=1))
        (edge,) = result["edges"]
        assert edge["errors"] > 0
        assert (edge["retries"] > 0) is retried
