"""RuleSet: names in, names out, and always the same answer as testing each pattern."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setpiece.patterns import PatternError, RuleSet, compile


def test_match_returns_the_names_of_matching_rules() -> None:
    rules = RuleSet()
    rules.add("orders", {"source": ["shop.orders"]})
    rules.add("big", {"detail": {"total": [{"numeric": [">", 100]}]}})
    rules.add("all", {})
    assert rules.match({"source": "shop.orders", "detail": {"total": 5}}) == {"orders", "all"}
    assert rules.match('{"source": "x", "detail": {"total": 500}}') == {"big", "all"}
    assert len(rules) == 3 and "big" in rules and sorted(rules) == ["all", "big", "orders"]


def test_add_accepts_text_and_compiled_patterns_and_replaces_by_name() -> None:
    rules = RuleSet()
    compiled = compile({"a": [1]})
    assert rules.add("r", compiled) is compiled
    rules.add("s", '{"a": [2]}')
    assert rules.match({"a": 1}) == {"r"}
    rules.add("r", {"a": [2]})
    assert rules.match({"a": 1}) == set()
    assert rules.match({"a": 2}) == {"r", "s"}
    assert rules.get("s") is not None


def test_remove() -> None:
    rules = RuleSet()
    rules.add("a", {"x": ["1"]})
    rules.add("b", {"x": ["1"], "y": [{"exists": False}]})
    rules.remove("a")
    assert rules.match({"x": "1"}) == {"b"}
    rules.remove("b")
    assert rules.match({"x": "1"}) == set()
    with pytest.raises(KeyError):
        rules.remove("b")


def test_invalid_pattern_leaves_the_set_unchanged() -> None:
    rules = RuleSet()
    rules.add("ok", {"a": [1]})
    with pytest.raises(PatternError):
        rules.add("bad", {"a": []})
    assert "bad" not in rules
    assert rules.match({"a": 1}) == {"ok"}


def test_shared_conditions_and_every_operator_in_one_set() -> None:
    patterns: dict[str, Any] = {
        "exact": {"s": ["a"], "n": [1]},
        "prefix": {"s": [{"prefix": "a"}]},
        "suffix": {"s": [{"suffix": "c"}]},
        "folded": {"s": [{"equals-ignore-case": "ABC"}]},
        "folded-prefix": {"s": [{"prefix": {"equals-ignore-case": "AB"}}]},
        "folded-suffix": {"s": [{"suffix": {"equals-ignore-case": "BC"}}]},
        "wild": {"s": [{"wildcard": "a*c"}]},
        "but": {"s": [{"anything-but": ["a", "b"]}]},
        "but-prefix": {"s": [{"anything-but": {"prefix": "z"}}]},
        "range": {"n": [{"numeric": [">", 0, "<=", 1]}]},
        "cidr": {"ip": [{"cidr": "10.0.0.0/8"}]},
        "exists": {"ip": [{"exists": True}]},
        "absent": {"missing": [{"exists": False}], "s": ["abc"]},
        "or": {"$or": [{"n": [7]}, {"s": ["abc"]}]},
    }
    rules = RuleSet()
    for name, pattern in patterns.items():
        rules.add(name, pattern)
    events = [
        {"s": "abc", "n": 1, "ip": "10.1.2.3"},
        {"s": "a", "n": 1},
        {"s": "ABC", "n": 0.5, "ip": "11.0.0.1"},
        {"s": ["zz", "a"], "n": [7, 2]},
        {"s": "xbc", "missing": None},
    ]
    for event in events:
        expected = {name for name, p in patterns.items() if compile(p).matches(event)}
        assert rules.match(event) == expected, event


# -- property: the index agrees with evaluating each pattern -------------------------------

FIELDS = ["a", "b", "c.d", "c.e"]
WORDS = ["", "ab", "abc", "Abc", "b", "10.0.0.1", "2001:db8::1"]
NUMBERS = [0, 1, 2.5, -3, 1e10]

scalars = st.one_of(st.sampled_from(WORDS), st.sampled_from(NUMBERS), st.booleans(), st.none())
strings = st.sampled_from(["a", "ab", "b", "bc", "c", "A"])
expressions = st.one_of(
    scalars,
    st.builds(lambda s: {"prefix": s}, strings),
    st.builds(lambda s: {"suffix": s}, strings),
    st.builds(lambda s: {"equals-ignore-case": s}, strings),
    st.builds(lambda s: {"prefix": {"equals-ignore-case": s}}, strings),
    st.builds(lambda s: {"wildcard": s}, st.sampled_from(["*", "a*", "*c", "a*c", "*b*"])),
    st.builds(lambda v: {"anything-but": v}, st.sampled_from(["ab", 1, ["ab", "b"], [0, 1]])),
    st.builds(lambda s: {"anything-but": {"suffix": s}}, strings),
    st.builds(lambda n: {"numeric": [">", n]}, st.sampled_from(NUMBERS)),
    st.builds(lambda n: {"numeric": [">=", n, "<", n + 5]}, st.sampled_from(NUMBERS)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.just({"cidr": "10.0.0.0/24"}),
)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        head, _, tail = path.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


conditions = st.dictionaries(
    st.sampled_from(FIELDS), st.lists(expressions, min_size=1, max_size=3), max_size=3
)


@st.composite
def patterns(draw: st.DrawFn) -> dict[str, Any]:
    pattern = _nest(draw(conditions))
    if draw(st.booleans()):
        branches = draw(st.lists(conditions.filter(bool), min_size=2, max_size=3))
        pattern["$or"] = [_nest(branch) for branch in branches]
    return pattern


leaf_values = st.one_of(scalars, st.lists(scalars, max_size=3))
objects = st.dictionaries(st.sampled_from(["d", "e"]), leaf_values, max_size=2)
events = st.fixed_dictionaries(
    {},
    optional={
        "a": leaf_values,
        "b": leaf_values,
        "c": st.one_of(objects, st.lists(objects, max_size=3)),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=8), st.lists(events, min_size=1, max_size=4))
def test_ruleset_agrees_with_each_pattern(drawn: list[dict[str, Any]], evs: list[Any]) -> None:
    compiled = {}
    for i, pattern in enumerate(drawn):
        try:
            compiled[f"r{i}"] = compile(pattern)
        except PatternError:
            continue
    rules = RuleSet()
    for name, pattern in compiled.items():
        rules.add(name, pattern)
    if compiled:
        rules.remove(next(iter(compiled)))
        del compiled[next(iter(compiled))]
    for event in evs:
        expected = {name for name, p in compiled.items() if p.matches(event)}
        assert rules.match(event) == expected
        assert rules.match(json.dumps(event)) == expected


# Deeper events: arrays of arrays, arrays of objects holding arrays, dotted keys.
deep_leaves = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.lists(st.lists(scalars, max_size=2), max_size=2)
)
deep_objects = st.dictionaries(st.sampled_from(["d", "e"]), deep_leaves, max_size=2)
deep_events = st.dictionaries(
    st.sampled_from(["a", "b", "c", "c.d", "c.e", "x"]),
    st.one_of(
        deep_leaves,
        deep_objects,
        st.lists(deep_objects, max_size=3),
        st.lists(st.one_of(deep_objects, st.lists(deep_objects, max_size=2)), max_size=3),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=8), st.lists(deep_events, min_size=1, max_size=4))
def test_ruleset_agrees_with_each_pattern_on_nested_events(
    drawn: list[dict[str, Any]], evs: list[Any]
) -> None:
    compiled = {}
    for i, pattern in enumerate(drawn):
        try:
            compiled[f"r{i}"] = compile(pattern)
        except PatternError:
            continue
    rules = RuleSet()
    for name, pattern in compiled.items():
        rules.add(name, pattern)
    for event in evs:
        expected = {name for name, p in compiled.items() if p.matches(event)}
        assert rules.match(event) == expected
        assert rules.match(json.dumps(event)) == expected


def test_rules_added_between_matches_and_the_rebuild_as_the_set_grows() -> None:
    rules = RuleSet()
    compiled = {}
    events = [{"s": s, "n": n, "t": t} for s in "ab" for n in range(4) for t in ("x", "y")]
    for i in range(200):
        pattern: dict[str, Any] = {"s": ["ab"[i % 2]]}
        if i % 3:
            pattern["n"] = [{"numeric": [">=", i % 4]}]
        if i % 5 == 0:
            pattern["t"] = [{"anything-but": "x"}]
        compiled[f"r{i}"] = compile(pattern)
        rules.add(f"r{i}", pattern)
        if i % 7 == 0:
            event = events[i % len(events)]
            assert rules.match(event) == {n for n, p in compiled.items() if p.matches(event)}
    for event in events:
        assert rules.match(event) == {n for n, p in compiled.items() if p.matches(event)}
