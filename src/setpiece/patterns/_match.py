"""``compile`` and ``Pattern``: one pattern, evaluated directly against an event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setpiece.patterns._event import Field, Flat, Need, consistent, flatten
from setpiece.patterns._matchers import Exact
from setpiece.patterns._numbers import event_key
from setpiece.patterns._parse import Condition, SubRule, parse

__all__ = ["Pattern", "compile", "condition_test", "fields_of"]


def _never(value: object) -> bool:
    return False


def condition_test(condition: Condition) -> Callable[[object], bool]:
    """A fast test of one leaf value against the value alternatives of ``condition``."""
    matchers = condition.matchers
    if not matchers:
        return _never
    if all(type(m) is Exact for m in matchers):
        keys = frozenset(m.key for m in matchers)  # type: ignore[union-attr]

        def exact(value: object) -> bool:
            return (value if type(value) is str else event_key(value)) in keys

        return exact
    if len(matchers) == 1:
        return next(iter(matchers)).test
    tests = tuple(m.test for m in matchers)

    def any_of(value: object) -> bool:
        return any(test(value) for test in tests)

    return any_of


def fields_of(sub: SubRule) -> tuple[Field, ...]:
    return tuple((c.path, condition_test(c), c.absent_ok, bool(c.matchers)) for c in sub)


class Pattern:
    """A compiled event pattern. Build one with :func:`compile`."""

    __slots__ = ("_need", "_source", "fields", "subrules")

    def __init__(self, subrules: tuple[SubRule, ...], source: object) -> None:
        self.subrules = subrules
        self.fields = tuple(fields_of(sub) for sub in subrules)
        self._need = Need(c.path for sub in subrules for c in sub)
        self._source = source

    @property
    def source(self) -> object:
        """The pattern as it was given (dict or JSON text)."""
        return self._source

    def __repr__(self) -> str:
        return f"Pattern({self._source!r})"

    def matches(self, event: Any) -> bool:
        """Whether ``event`` (a dict, or JSON text) matches this pattern."""
        flat = flatten(event, self._need)
        return self.matches_flat(flat)

    def matches_flat(self, flat: Flat) -> bool:
        values = flat.values
        deep = flat.deep
        for fields in self.fields:
            for path, test, absent_ok, _ in fields:
                found = values.get(path)
                if found is None:
                    if absent_ok:
                        continue
                    break
                if absent_ok and path in deep:
                    continue  # absence inside arrays of objects is judged per element
                for value in found:
                    if test(value):
                        break
                else:
                    break
            else:
                if not deep or consistent(fields, flat):
                    return True
        return False


def compile(pattern: object) -> Pattern:
    """Validate and compile an event pattern given as a dict or as JSON text.

    Raises PatternError, naming the JSON path of the offending part, when it is invalid.
    """
    if isinstance(pattern, Pattern):
        return pattern
    return Pattern(parse(pattern), pattern)
