"""The value tests a pattern is made of, one class per operator.

Every matcher is a frozen, hashable value (equal matchers are shared in a RuleSet's index) with a
``test(value)`` that takes one leaf value of an event as decoded (str, int, float, bool, None or
NumText).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from setpiece.patterns._cidr import parse_ip
from setpiece.patterns._numbers import Key, event_key
from setpiece.patterns._text import ignore_case_test, wildcard_test

__all__ = [
    "Address",
    "AnythingBut",
    "AnythingButText",
    "Exact",
    "Exists",
    "IgnoreCase",
    "Matcher",
    "Numeric",
    "Prefix",
    "Suffix",
    "Wildcard",
    "number_of",
]


def number_of(value: object) -> float | int | None:
    """The numeric value of an event leaf, or None when it takes no part in numeric matching."""
    if type(value) is str:
        return None
    key = event_key(value)
    kind = type(key)
    if kind is float or kind is int:
        assert isinstance(key, float | int)
        return key
    return None


@dataclass(frozen=True, slots=True)
class Exact:
    """Equal to one string, number (numerically), boolean or null."""

    key: Key

    def test(self, value: object) -> bool:
        return (value if type(value) is str else event_key(value)) == self.key


@dataclass(frozen=True, slots=True)
class Address:
    """A string IP address inside ``[low, high]`` of one family (``cidr`` and IP literals)."""

    bits: int
    low: int
    high: int

    def test(self, value: object) -> bool:
        if type(value) is not str:
            return False
        assert isinstance(value, str)
        ip = parse_ip(value)
        return ip is not None and ip[0] == self.bits and self.low <= ip[1] <= self.high


@dataclass(frozen=True, slots=True)
class Prefix:
    text: str

    def test(self, value: object) -> bool:
        return type(value) is str and value.startswith(self.text)


@dataclass(frozen=True, slots=True)
class Suffix:
    text: str

    def test(self, value: object) -> bool:
        return type(value) is str and value.endswith(self.text)


@dataclass(frozen=True, slots=True)
class IgnoreCase:
    """``equals-ignore-case``, or ``prefix``/``suffix`` with ``equals-ignore-case``."""

    mode: str  # "equals", "prefix" or "suffix"
    text: str
    check: Callable[[str], bool] = field(compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, mode: str, text: str) -> IgnoreCase:
        return cls(mode, text, ignore_case_test(text, mode))

    def test(self, value: object) -> bool:
        return type(value) is str and self.check(value)


@dataclass(frozen=True, slots=True)
class Wildcard:
    pieces: tuple[str, ...]
    check: Callable[[str], bool] = field(compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, pieces: tuple[str, ...]) -> Wildcard:
        return cls(pieces, wildcard_test(pieces))

    def test(self, value: object) -> bool:
        return type(value) is str and self.check(value)


@dataclass(frozen=True, slots=True)
class Numeric:
    """A comparable number inside a range; an open end excludes its bound."""

    low: float = -math.inf
    low_open: bool = True
    high: float = math.inf
    high_open: bool = True

    def contains(self, number: float) -> bool:
        if number < self.low or (self.low_open and number == self.low):
            return False
        return not (number > self.high or (self.high_open and number == self.high))

    def test(self, value: object) -> bool:
        number = number_of(value)
        return number is not None and self.contains(number)


@dataclass(frozen=True, slots=True)
class Exists:
    """``{"exists": true}``: any leaf value at all."""

    def test(self, value: object) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class AnythingBut:
    """Any value whose key is not one of ``keys`` (strings, or comparable numbers)."""

    keys: frozenset[Key]

    def test(self, value: object) -> bool:
        return (value if type(value) is str else event_key(value)) not in self.keys


@dataclass(frozen=True, slots=True)
class AnythingButText:
    """Any value that is not a string matching one of the ``mode`` tests (prefix, suffix,
    equals-ignore-case, wildcard) built from ``texts``."""

    mode: str
    texts: tuple[str, ...]
    checks: tuple[Callable[[str], bool], ...] = field(compare=False, hash=False, repr=False)

    def test(self, value: object) -> bool:
        if type(value) is not str:
            return True
        return not any(check(value) for check in self.checks)


Matcher = (
    Exact
    | Address
    | Prefix
    | Suffix
    | IgnoreCase
    | Wildcard
    | Numeric
    | Exists
    | AnythingBut
    | AnythingButText
)
