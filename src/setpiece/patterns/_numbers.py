"""Numbers the way event-ruler compares them.

A JSON number takes part in numeric comparison only when its decimal text is exactly the
shortest decimal form of the nearest IEEE-754 double ("comparable"): ``3``, ``3.0`` and ``3e0``
all are; ``0.30000000000000001`` and ``2**60`` written out in full are not, and match only a
number written with the same text. Strings, booleans and null never equal a number.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = [
    "FALSE",
    "NULL",
    "TRUE",
    "Literal",
    "NumText",
    "Unmatchable",
    "comparable",
    "event_key",
    "number_key",
]

_EXACT_INT: Final = 2**53
_MIN_NORMAL: Final = 2.2250738585072014e-308


class NumText:
    """A JSON number with no exact double: it equals only a number written the same way."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return type(other) is NumText and other.text == self.text

    def __hash__(self) -> int:
        return hash((NumText, self.text))

    def __repr__(self) -> str:
        return f"NumText({self.text!r})"


class Literal:
    """``true``, ``false`` or ``null`` as an index key that equals no number and no string."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class Unmatchable:
    """The key of a value that is not JSON (a set, a datetime...): it equals nothing."""

    __slots__ = ()


TRUE: Final = Literal("true")
FALSE: Final = Literal("false")
NULL: Final = Literal("null")

Key = str | int | float | NumText | Literal | Unmatchable


def comparable(text: str) -> float | None:
    """The double that ``text`` denotes exactly, or None when it has none."""
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    if math.isinf(value) or math.isnan(value):
        return None
    # Up to 15 significant digits always survive a round trip through a normal double.
    if len(text) <= 15 and abs(value) >= _MIN_NORMAL:
        return value
    try:
        return value if Decimal(repr(value)) == Decimal(text) else None
    except InvalidOperation:
        return None


def number_key(text: str) -> float | NumText:
    """The exact-match key of a number given by its JSON text."""
    value = comparable(text)
    return NumText(text) if value is None else value


def event_key(value: object) -> Key:
    """The exact-match key of an event value that is not a string."""
    kind = type(value)
    if kind is bool:
        return TRUE if value else FALSE
    if value is None:
        return NULL
    if kind is int:
        assert isinstance(value, int)
        if -_EXACT_INT <= value <= _EXACT_INT:
            return value
        return number_key(str(value))
    if kind is float:
        assert isinstance(value, float)
        return value if math.isfinite(value) else NumText(repr(value))
    if kind is NumText or kind is str:
        assert isinstance(value, NumText | str)
        return value
    return _UNMATCHABLE


_UNMATCHABLE: Final = Unmatchable()


def decode_event_float(text: str) -> float | NumText:
    """msgspec float hook for events: keep the text of numbers that have no exact double."""
    value = float(text)
    if len(text) <= 15 and abs(value) >= _MIN_NORMAL and not math.isinf(value):
        return value
    return number_key(text)
