"""How near an event comes to a pattern, for the report of an expectation that failed.

A pattern is a set of alternatives (``$or`` splits one pattern into several); each alternative
is a list of fields, each a path and a condition. An event's closeness is, over the pattern's
alternatives, the most fields it satisfies (ties: the alternative with fewer fields), as
``(matched, tested)``. Pure: no I/O, nothing of setpiece but the patterns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from setpiece.patterns._event import Field, Flat, Need, flatten
from setpiece.patterns._match import Pattern

__all__ = ["closeness", "nearest"]


def _holds(field: Field, flat: Flat) -> bool:
    path, test, absent_ok, _ = field
    found = flat.values.get(path)
    if found is None:
        return absent_ok
    if absent_ok and path in flat.deep:
        return True  # absence inside arrays of objects is judged per element
    return any(test(value) for value in found)


def closeness(pattern: Pattern, event: Mapping[str, Any]) -> tuple[int, int]:
    """``(matched, tested)``: the fields of the pattern's best alternative that ``event``
    (the dict a rule's pattern sees) satisfies, and how many that alternative has."""
    need = Need(field[0] for fields in pattern.fields for field in fields)
    flat = flatten(dict(event), need)
    best = (-1, 0)
    for fields in pattern.fields:
        matched = sum(1 for field in fields if _holds(field, flat))
        if (matched, -len(fields)) > (best[0], -best[1]):
            best = (matched, len(fields))
    return (max(best[0], 0), best[1])


def nearest(
    pattern: Pattern, events: Sequence[Mapping[str, Any]], limit: int = 5
) -> list[tuple[int, int, int]]:
    """The ``limit`` events nearest to ``pattern``, nearest first (earlier first on a tie), as
    ``(index in events, matched, tested)``."""
    scored = []
    for index, event in enumerate(events):
        try:
            matched, tested = closeness(pattern, event)
        except Exception:  # an event the pattern cannot be matched against is not near
            continue
        scored.append((index, matched, tested))
    scored.sort(key=lambda item: (-item[1], item[2], item[0]))
    return scored[:limit]
