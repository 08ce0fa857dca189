"""How near an event comes to a pattern (setpiece.patterns._nearest): the report of a failed
``rt.expect``."""

from __future__ import annotations

from setpiece.patterns import compile
from setpiece.patterns._nearest import closeness, nearest

ORDER = {"type": "order_paid", "source": "checkout", "data": {"total": 30, "items": [
    {"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}}


def test_closeness_counts_the_fields_the_event_satisfies() -> None:
    pattern = compile({"type": ["order_paid"], "source": ["shop"],
                       "data": {"total": [{"numeric": [">", 10]}]}})
    assert closeness(pattern, ORDER) == (2, 3)
    assert closeness(pattern, {"type": "other"}) == (0, 3)
    assert closeness(compile({"data": {"note": [{"exists": False}]}}), ORDER) == (1, 1)


def test_closeness_takes_the_best_alternative_of_an_or() -> None:
    pattern = compile({"$or": [{"type": ["x"], "source": ["y"], "subject": ["z"]},
                               {"type": ["order_paid"], "data": {"total": [1]}}]})
    assert closeness(pattern, ORDER) == (1, 2)  # 1 of 2 beats 0 of 3
    assert closeness(pattern, {"type": "x", "source": "y"}) == (2, 3)


def test_closeness_looks_inside_arrays_of_objects() -> None:
    pattern = compile({"data": {"items": {"sku": ["b"], "qty": [2]}}})
    assert closeness(pattern, ORDER) == (2, 2)


def test_nearest_ranks_by_fields_matched_then_order() -> None:
    pattern = compile({"type": ["order_paid"], "source": ["checkout"]})
    events = [{"type": "x"}, {"type": "order_paid", "source": "shop"}, ORDER,
              {"type": "order_paid"}]
    assert nearest(pattern, events, limit=3) == [(2, 2, 2), (1, 1, 2), (3, 1, 2)]
    assert nearest(pattern, [], limit=3) == []
