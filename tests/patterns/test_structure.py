"""Nesting, dotted keys, arrays and array consistency, $or, JSON text."""

from __future__ import annotations

import pytest

from setpiece.patterns import PatternError, RuleSet, compile
from tests.patterns.helpers import matches

ORDER = {
    "source": "shop.orders",
    "detail-type": "Order Placed",
    "detail": {"total": 42.5, "customer": {"tier": "gold", "country": "DE"}},
}


def test_empty_pattern_matches_every_event() -> None:
    assert matches({}, {})
    assert matches({}, ORDER)


def test_every_field_must_match() -> None:
    assert matches({"source": ["shop.orders"], "detail-type": ["Order Placed"]}, ORDER)
    assert not matches({"source": ["shop.orders"], "detail-type": ["Order Paid"]}, ORDER)


def test_fields_the_pattern_does_not_name_are_ignored() -> None:
    assert matches({"source": ["shop.orders"]}, ORDER)


def test_nested_objects_and_dotted_keys_are_the_same_path() -> None:
    nested = {"detail": {"customer": {"tier": ["gold"]}}}
    dotted = {"detail.customer.tier": ["gold"]}
    half = {"detail": {"customer.tier": ["gold"]}}
    for pattern in (nested, dotted, half):
        assert matches(pattern, ORDER)
        assert matches(pattern, {"detail.customer": {"tier": "gold"}})  # dotted event keys too
        assert not matches(pattern, {"detail": {"customer": {"tier": "silver"}}})


def test_a_pattern_object_never_matches_a_leaf() -> None:
    assert not matches({"detail": {"total": [42.5]}}, {"detail": 42.5})
    assert not matches({"detail": ["x"]}, {"detail": {"x": 1}})


def test_any_element_of_an_array_may_match() -> None:
    assert matches({"tags": ["b"]}, {"tags": ["a", "b", "c"]})
    assert not matches({"tags": ["z"]}, {"tags": ["a", "b"]})
    assert matches({"grid": [3]}, {"grid": [[1, 2], [3, [4]]]})  # nested arrays flatten
    assert matches({"items": {"sku": ["B"]}}, {"items": [{"sku": "A"}, {"sku": "B"}]})


def test_array_consistency_fields_come_from_one_element() -> None:
    pattern = {"items": {"sku": ["A"], "qty": [2]}}
    same = {"items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}
    split = {"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}
    assert matches(pattern, same)
    assert not matches(pattern, split)


def test_array_consistency_through_nested_arrays() -> None:
    pattern = {"orders": {"lines": {"sku": ["A"], "qty": [{"numeric": [">", 5]}]}}}
    ok = {"orders": [{"lines": [{"sku": "A", "qty": 1}]}, {"lines": [{"sku": "A", "qty": 9}]}]}
    bad = {"orders": [{"lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 9}]}]}
    assert matches(pattern, ok)
    assert not matches(pattern, bad)


def test_fields_in_different_arrays_combine_freely() -> None:
    pattern = {"a": {"x": [1]}, "b": {"y": [2]}}
    event = {"a": [{"x": 0}, {"x": 1}], "b": [{"y": 2}, {"y": 3}]}
    assert matches(pattern, event)


def test_a_field_outside_the_array_goes_with_any_element() -> None:
    pattern = {"order": {"id": ["o1"], "lines": {"sku": ["B"]}}}
    assert matches(pattern, {"order": {"id": "o1", "lines": [{"sku": "A"}, {"sku": "B"}]}})


def test_exists_false_is_judged_within_the_matched_element() -> None:
    pattern = {"people": {"name": ["Ann"], "email": [{"exists": False}]}}
    assert matches(pattern, {"people": [{"name": "Bob", "email": "b@x"}, {"name": "Ann"}]})
    assert not matches(pattern, {"people": [{"name": "Ann", "email": "a@x"}, {"name": "Bob"}]})


def test_exists_false_everywhere_matches_an_empty_event() -> None:
    pattern = {"a": [{"exists": False}], "b": {"c": [{"exists": False}]}}
    assert matches(pattern, {})
    assert not matches(pattern, {"b": {"c": 1}})


def test_or_at_the_top() -> None:
    pattern = {"$or": [{"source": ["a"]}, {"detail-type": ["T"]}]}
    assert matches(pattern, {"source": "a"})
    assert matches(pattern, {"detail-type": "T"})
    assert not matches(pattern, {"source": "b", "detail-type": "U"})


def test_or_nested_and_combined_with_fields() -> None:
    pattern = {
        "source": ["shop.orders"],
        "detail": {
            "$or": [
                {"total": [{"numeric": [">", 100]}]},
                {"customer": {"$or": [{"tier": ["gold"]}, {"country": ["FR"]}]}},
            ]
        },
    }
    assert matches(pattern, ORDER)  # via tier gold
    assert not matches(pattern, {**ORDER, "source": "other"})
    silver = {**ORDER, "detail": {"total": 5, "customer": {"tier": "silver", "country": "DE"}}}
    assert not matches(pattern, silver)
    assert matches(pattern, {**silver, "detail": {**silver["detail"], "total": 500}})


def test_json_text_patterns_and_events() -> None:
    pattern = compile(b'{"detail": {"customer": {"tier": ["gold"]}}}')
    assert pattern.matches('{"detail": {"customer": {"tier": "gold"}}}')
    assert pattern.matches(b'{"detail": {"customer": {"tier": "gold"}}}')
    assert not pattern.matches('{"detail": {"customer": {"tier": "lead"}}}')


def test_duplicate_keys_in_json_text_last_one_wins() -> None:
    pattern = compile('{"x": ["y"], "x": ["z"]}')
    assert pattern.matches({"x": "z"})
    assert not pattern.matches({"x": "y"})


def test_invalid_event_text_raises_pattern_error() -> None:
    with pytest.raises(PatternError, match="event: invalid JSON"):
        compile({"a": [1]}).matches('{"a": ')
    with pytest.raises(PatternError, match="event: must be a JSON object"):
        compile({"a": [1]}).matches("[1, 2]")


def test_large_event_with_large_arrays() -> None:
    items = [{"sku": f"S{i}", "qty": i % 7} for i in range(5000)]
    event = {"detail": {"items": items, "readings": list(range(20000))}}
    pattern = compile({"detail": {"items": {"sku": ["S4999"], "qty": [{"numeric": ["=", 1]}]}}})
    assert pattern.matches(event)  # 4999 % 7 == 1
    assert not compile({"detail": {"items": {"sku": ["S4998"], "qty": [1]}}}).matches(event)


def test_dotted_event_keys_beside_fields_looked_up_directly() -> None:
    # Objects whose tested fields are all leaves are read by lookup, not by scanning their keys:
    # a dotted key there can only address fields below a leaf, which no pattern tests.
    assert matches({"type": ["x"]}, {"type.x": 1, "type": "x", "other": {"a": 1}})
    assert matches({"a": {"b": [1], "c": [2]}}, {"a.b": 1, "a": {"c": 2}})
    assert matches({"a": {"b": [1]}, "z": [0]}, {"z": 0, "a.b": 1, "q": 1, "r": 2, "s": 3})
    assert matches({"a": {"b": {"c": [1]}}}, {"a": {"b.c": 1, "x": 1, "y": 2, "z": 3}})
    assert not matches({"a": {"b": [1]}}, {"a": {"b.c": 1}, "a.b.c": 1})


def test_fields_outside_arrays_of_objects_do_not_take_part_in_consistency() -> None:
    pattern = {
        "source": ["s"],
        "tags": ["vip"],
        "lines": {"sku": ["A"], "qty": [2], "gift": [{"exists": False}]},
        "note": [{"exists": False}],
    }
    event = {
        "source": "s",
        "tags": ["new", "vip"],
        "lines": [{"sku": "A", "qty": 2}, {"sku": "A", "qty": 1, "gift": True}],
    }
    assert matches(pattern, event)
    assert not matches(pattern, {**event, "note": "x"})
    assert not matches(pattern, {**event, "lines": [{"sku": "A", "qty": 2, "gift": 1}]})
    assert not matches(pattern, {**event, "lines": [{"sku": "A"}, {"qty": 2}]})


def test_consistency_across_nested_and_sibling_arrays() -> None:
    pattern = {"o": {"items": {"sku": ["A"], "qty": [2]}, "id": ["x"]}}
    both = {"o": [{"id": "x", "items": [{"sku": "A", "qty": 2}]}]}
    other_order = {"o": [{"id": "x", "items": [{"sku": "B"}]}, {"id": "y", "items": [
        {"sku": "A", "qty": 2}]}]}  # fmt: skip
    split_items = {"o": [{"id": "x", "items": [{"sku": "A"}, {"qty": 2}]}]}
    assert matches(pattern, both)
    assert not matches(pattern, other_order)
    assert not matches(pattern, split_items)
    # two arrays of objects: any element of one with any element of the other
    siblings = {"a": {"k": ["1"]}, "b": {"k": ["2"]}}
    assert matches(siblings, {"a": [{"k": "0"}, {"k": "1"}], "b": [{"k": "2"}]})
    many = {"items": [{"sku": f"S{i}", "qty": i % 7} for i in range(500)]}
    assert matches({"items": {"sku": ["S499"], "qty": [2]}}, many)
    assert not matches({"items": {"sku": ["S499"], "qty": [3]}}, many)


def test_keys_that_are_not_strings_in_objects_read_by_scanning() -> None:
    # An object whose tested fields lead further down is scanned for dotted keys: a key that
    # is not a string is refused there, as it is when the whole object is read key by key.
    deeper = {"a": {"b": {"c": [1]}}}
    for event in (
        {"a": {"b": 1, 7: 2, "c": 3, "d": 4}},
        {1: 2, "a": {"b": 1}},
        {"a": {"b": {"c": 1}, 5: 1}},
    ):
        with pytest.raises(PatternError, match="field names must be strings"):
            compile(deeper).matches(event)
        rules = RuleSet()
        rules.add("r", deeper)
        with pytest.raises(PatternError, match="field names must be strings"):
            rules.match(event)
    # Objects read by lookup (only leaves tested in them) never look at the other keys.
    assert not compile({"a": {"b": [1]}, "z": [1]}).matches({"a": {"b": 1, 7: 2, "c": 3}})
    assert compile({"a": {"b": [1]}}).matches({"a": {"b": 1, 7: 2, "c": 3}})
