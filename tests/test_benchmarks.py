"""The benchmarks' own code, run small: their flows do the work they claim, and the pattern
workload's index agrees with the naive loop it is compared to. (No timing is checked here.)"""

from __future__ import annotations

import random
from typing import Any

from benchmarks import patterns as pattern_bench
from benchmarks import throughput
from setpiece.patterns import RuleSet, compile


def test_engine_floor_and_end_to_end_handle_every_event(run: Any) -> None:
    # Each returns only once every input event went through both hops (they loop or assert).
    assert run(throughput.engine_floor("memory", 300)) > 0
    assert run(throughput.end_to_end("memory", 300)) > 0


def test_raw_engine_reads_back_what_it_appended(run: Any) -> None:
    assert run(throughput.raw_engine("memory", 300)) > 0


def test_the_pattern_workload_matches_as_the_naive_loop_does() -> None:
    rng = random.Random(7)
    events = [pattern_bench.make_event(rng) for _ in range(150)]
    events.append(pattern_bench.big_event(rng))
    rules = [pattern_bench.make_rule(rng, scoped=0.3) for _ in range(300)]
    index = RuleSet()
    compiled = []
    for i, rule in enumerate(rules):
        index.add(f"r{i}", rule)
        compiled.append((f"r{i}", compile(rule)))
    matched = 0
    for event in events:
        expected = {name for name, pattern in compiled if pattern.matches(event)}
        assert index.match(event) == expected
        matched += len(expected)
    assert matched > 0, "the workload must produce matches"


def test_the_flow_with_schemas_validates_every_event(run: Any) -> None:
    for kind in ("struct", "json"):
        assert run(throughput.end_to_end("memory", 300, schemas=kind)) > 0
    stack = throughput.build_stack("json")
    assert sorted(stack.schemas) == ["order_placed", "order_priced"]


def test_the_testing_benchmark_starts_and_stops_its_stack(run: Any) -> None:
    from benchmarks import testing as testing_bench

    found = run(testing_bench.measure("sqlite", rounds=1))
    assert set(found) == {"stack", "cleanup", "engine"} and found["stack"] > 0
