"""The fast paths of matching: walkers made for a ``Need``, visits made for a trie node, and
groups that remember what a string leads to. Each must give exactly what the generic code
gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setpiece.patterns import PatternError, RuleSet, compile
from setpiece.patterns._event import _SPECIALISE_AFTER, Flat, Need, _specialise, flatten


def _generic(event: Any, need: Need) -> Flat:
    need.walker = None
    need.uses = -(10**9)  # never specialised
    return flatten(event, need)


def _special(event: Any, need: Need) -> Flat:
    need.walker = _specialise(need.tree)
    return flatten(event, need)


def _outcome(walk: Any, event: Any, need: Need) -> Any:
    try:
        flat = walk(event, need)
    except PatternError as exc:
        return str(exc)
    chains = {path: flat.chains_of(path) for path in flat.values}
    return flat.values, chains, flat.deep


segments = st.sampled_from(["a", "b", "c"])
paths = st.lists(segments, min_size=1, max_size=3).map(".".join)
keys = st.sampled_from(["a", "b", "c", "a.b", "b.c", "a.b.c", "x", 7])
scalars = st.one_of(st.sampled_from(["s", "t", ""]), st.integers(-2, 2), st.booleans(), st.none())
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=12,
)
events = st.dictionaries(keys, trees, max_size=5)


@settings(max_examples=400, deadline=None)
@given(st.lists(paths, min_size=1, max_size=6), events)
def test_a_walker_made_for_a_need_flattens_as_the_generic_walk(
    needed: list[str], event: dict[Any, Any]
) -> None:
    need = Need(needed)
    expected = _outcome(_generic, event, need)
    assert _outcome(_special, event, need) == expected


def test_walker_cases_by_hand() -> None:
    need = Need(["a.b", "a.c.d", "a.c", "e", "l.m", "l.n"])
    cases: list[Any] = [
        {"a": {"b": 1, "c": {"d": 2}}, "e": [1, [2, 3]]},
        {"a.b": 1, "a": {"c": 2, "c.d": 3}},  # dotted keys at the root, then below
        {"a": {"b": 1, "c.d": 4, "c": {"d": 5}}},  # both routes to a.c.d
        {"a": [{"b": 1}, {"b": 2, "c": [{"d": 1}, {"d": [2, 3]}]}]},  # arrays at each level
        {"l": [{"m": 1, "n": 2}, {"m": 3}, {"m.x": 1, "n": 4}, [{"m": 5}]]},
        {"l": [{"m": 1, "n.q": 2, "x": 0}], "e": {"f": 1}},
        {"a": {"b": 1, 7: 2}},  # a key that is not a string where a dotted key could matter
        {"e": 1, 7: 2},
        {"a": {"b": {"c": 1}}, "l": {"m": [[1], 2]}},
    ]
    for event in cases:
        assert _outcome(_special, event, need) == _outcome(_generic, event, need), event
    with pytest.raises(PatternError, match="field names must be strings"):
        _special({"a": {"b": 1, 7: 2}}, need)


def test_need_growing_drops_its_walker() -> None:
    need = Need(["a"])
    for _ in range(_SPECIALISE_AFTER):
        flatten({"a": 1, "b": 2}, need)
    assert need.walker is not None
    need.add(["b"])
    assert need.walker is None
    assert flatten({"a": 1, "b": 2}, need).values == {"a": [1], "b": [2]}


def test_trees_of_one_shape_share_code_but_not_keys() -> None:
    one, other = Need(["a.b", "c"]), Need(["x.y", "z"])
    assert _special({"a": {"b": 1}, "c": 2}, one).values == {"a.b": [1], "c": [2]}
    assert _special({"a": {"b": 1}, "c": 2, "x": {"y": 3}}, other).values == {"x.y": [3]}


def _agree(rules: RuleSet, compiled: dict[str, Any], event: Any) -> None:
    expected = {name for name, p in compiled.items() if p.matches(event)}
    assert rules.match(event) == expected, event


def test_a_warm_rule_set_agrees_with_each_pattern_and_grows() -> None:
    """Many events through one RuleSet: its walker, the node visits and the remembered groups
    are all in use; rules added later grow the Need and change the nodes."""
    patterns = [
        {"source": [{"prefix": "com.a"}, "x"], "d": {"city": [{"wildcard": "B*o*"}]}},
        {"source": [{"suffix": ".orders"}], "d": {"items": {"sku": [{"prefix": "S1"}]}}},
        {"d": {"country": [{"equals-ignore-case": "de"}], "tier": [{"exists": False}]}},
        {"d": {"ip": [{"cidr": "10.0.0.0/8"}], "n": [{"numeric": [">", 2]}]}},
        {"d": {"status": [{"anything-but": ["a", "b"]}], "items": {"q": [1, 2]}}},
        {"d.items.sku": ["S10"], "d": {"items": {"q": [3]}}},
    ]
    later = [
        {"d": {"items": {"tags": [{"prefix": "v"}]}}},
        {"e": {"f": [{"prefix": "g"}]}, "source": [{"prefix": "com."}]},
    ]

    def event(i: int) -> dict[str, Any]:
        d: dict[str, Any] = {
            "city": ["Boston", "Berlin", "Porto", "Bonn"][i % 4],
            "country": ["DE", "de", "FR"][i % 3],
            "ip": f"10.{i % 3}.0.{i % 250}" if i % 5 else f"11.0.0.{i % 250}",
            "n": i % 5,
            "status": "abc"[i % 3],
            "items": [
                {"sku": f"S{i % 13}", "q": i % 4, "tags": ["vip", "new"][: i % 3]}
                for _ in range(i % 3)
            ],
        }
        if i % 4 == 0:
            d["tier"] = "gold"
        if i % 6 == 0:
            d["items.sku"] = "S10"  # a dotted key beside the walker's lookups
        if i % 7 == 0:
            d = {"city": d["city"], "n": d["n"]}  # smaller than the keys the rules look up
        if i % 11 == 0:
            return {"source": "x", "d": [d, {"n": 9}]}
        source = ["com.a.orders", "com.b.orders", "x", "com.ab"][i % 4]
        return {"source": source, "d": d, "e": {"f": f"g{i}"}, f"k{i % 3}": 1}

    rules, compiled = RuleSet(), {}
    for i, pattern in enumerate(patterns):
        rules.add(f"r{i}", pattern)
        compiled[f"r{i}"] = compile(pattern)
    for i in range(300):  # more distinct ip strings than a group remembers
        _agree(rules, compiled, event(i))
    for i, pattern in enumerate(later):
        rules.add(f"l{i}", pattern)
        compiled[f"l{i}"] = compile(pattern)
    for i in range(300):
        _agree(rules, compiled, event(i))
        _agree(rules, compiled, json.dumps(event(i)))


@settings(max_examples=100, deadline=None)
@given(st.lists(events, min_size=1, max_size=3))
def test_a_warm_pattern_agrees_with_a_fresh_one(evs: list[dict[Any, Any]]) -> None:
    pattern = {"a": {"b": [{"exists": True}], "c": {"a": [1, "s"]}}, "b": [{"prefix": "s"}]}
    warm = compile(pattern)
    for _ in range(_SPECIALISE_AFTER):
        warm.matches({"a": {"b": 1}})
    for event in evs:
        try:
            expected: Any = compile(pattern).matches(event)
        except PatternError as exc:
            expected = str(exc)
        try:
            got: Any = warm.matches(event)
        except PatternError as exc:
            got = str(exc)
        assert got == expected
