"""Pattern validation and compilation to sub-rules.

A pattern compiles to a tuple of sub-rules (its ``$or`` branches multiplied out). A sub-rule is a
tuple of Conditions, one per field path, sorted by path: the event matches the sub-rule when
every condition holds, with all values taken from the same element of any array they share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from setpiece.errors import PatternError
from setpiece.patterns._cidr import parse_cidr, parse_ip
from setpiece.patterns._json import PatternFloat, decode_pattern
from setpiece.patterns._matchers import (
    Address,
    AnythingBut,
    AnythingButText,
    Exact,
    Exists,
    IgnoreCase,
    Matcher,
    Numeric,
    Prefix,
    Suffix,
    Wildcard,
)
from setpiece.patterns._numbers import FALSE, NULL, TRUE, Key, comparable, number_key
from setpiece.patterns._text import ignore_case_test, parse_wildcard, wildcard_test

__all__ = [
    "MAX_DEPTH",
    "MAX_PATH_LENGTH",
    "MAX_PATH_SEGMENTS",
    "MAX_SUBRULES",
    "MAX_VALUES",
    "Condition",
    "SubRule",
    "parse",
]

MAX_DEPTH: Final = 32
"""Deepest nesting of objects (``$or`` branches count as a level)."""
MAX_VALUES: Final = 10_000
"""Most match values and match expressions in one pattern."""
MAX_SUBRULES: Final = 1_024
"""Most combinations of ``$or`` branches one pattern may expand to."""
MAX_PATH_SEGMENTS: Final = 64
"""Most segments in one field path, nested objects and dots in keys alike (``{"a": {"b.c":
[1]}}`` is the path ``a.b.c``, three segments). Paths are walked segment by segment, in code made
for each pattern; a bound here keeps that work, and the time to compile, linear in the pattern."""
MAX_PATH_LENGTH: Final = 2_048
"""Longest field path, in characters: each field keeps its whole path, so without a bound a long
field name above many fields would cost their number times its length."""

# Names that are operators, so they cannot be field names inside "$or" (as in event-ruler).
_RESERVED_IN_OR: Final = frozenset(
    {
        "exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists",
        "wildcard", "numeric", "cidr", "=", "<", "<=", ">", ">=", "regex", "not-wildcard",
        "not-equals-ignore-case", "date-after", "date-on-or-after", "date-before",
        "date-on-or-before", "in-date-range", "ip-address-in-range", "ip-address-not-in-range",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Condition:
    """One field of a sub-rule: a value matching any of ``matchers``, or absence if allowed."""

    path: str
    matchers: frozenset[Matcher]
    absent_ok: bool


SubRule = tuple[Condition, ...]


def parse(pattern: object) -> tuple[SubRule, ...]:
    """Validate ``pattern`` (a dict, or JSON text) and compile it to sub-rules."""
    if isinstance(pattern, str | bytes | bytearray | memoryview):
        pattern = decode_pattern(bytes(pattern) if not isinstance(pattern, str) else pattern)
    if not isinstance(pattern, dict):
        raise PatternError(f"pattern: must be a JSON object, not {_kind(pattern)}")
    parser = _Parser()
    rules: list[dict[str, Condition]] = []
    if pattern:
        rules = parser.parse_object(pattern, "", rules, in_or=False, depth=1, segments=0)
    if not rules:
        return ((),)
    unique = dict.fromkeys(tuple(sorted(rule.values(), key=_by_path)) for rule in rules)
    return tuple(unique)


def _by_path(condition: Condition) -> str:
    return condition.path


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | PatternFloat):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shorten(path: str, limit: int = 120) -> str:
    """A path short enough for an error message."""
    return path if len(path) <= limit else f"{path[: limit - 3]}..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | PatternFloat) and not isinstance(value, bool)


def _number_text(value: object, path: str) -> str:
    if isinstance(value, PatternFloat):
        return value.text
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _comparable(value: object, path: str, what: str) -> float:
    text = _number_text(value, path)
    number = comparable(text)
    if number is None:
        raise PatternError(
            f"{path}: {what} {text} cannot be compared: it is out of range or has no exact "
            "double-precision value"
        )
    return number


class _Parser:
    def __init__(self) -> None:
        self.values = 0

    def count(self, path: str, n: int = 1) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise PatternError(f"{path}: pattern has more than {MAX_VALUES} match values")

    def parse_object(
        self,
        obj: dict[Any, Any],
        prefix: str,
        rules: list[dict[str, Condition]],
        *,
        in_or: bool,
        depth: int,
        segments: int,
    ) -> list[dict[str, Condition]]:
        """``segments``: how many the field path ``prefix`` has."""
        where = prefix or "pattern"
        if depth > MAX_DEPTH:
            raise PatternError(f"{where}: pattern is nested more than {MAX_DEPTH} levels deep")
        if not obj:
            raise PatternError(f"{where}: objects in a pattern must not be empty")
        for key, value in obj.items():
            if not isinstance(key, str):
                raise PatternError(f"{where}: field names must be strings, not {_kind(key)}")
            if key == "$or":
                rules = self.parse_or(value, prefix, rules, depth=depth, segments=segments)
                continue
            below = segments + key.count(".") + 1
            if below > MAX_PATH_SEGMENTS:
                raise PatternError(
                    f"{_shorten(f'{prefix}.{key}' if prefix else key)}: field path has more than "
                    f"{MAX_PATH_SEGMENTS} segments (nested objects and dots in field names "
                    "count alike)"
                )
            path = f"{prefix}.{key}" if prefix else key
            if len(path) > MAX_PATH_LENGTH:
                raise PatternError(
                    f"{_shorten(path)}: field path is longer than {MAX_PATH_LENGTH} characters"
                )
            if in_or and key in _RESERVED_IN_OR:
                raise PatternError(
                    f"{path}: {key!r} is an operator name and cannot be a field inside $or"
                )
            if isinstance(value, dict):
                rules = self.parse_object(
                    value, path, rules, in_or=in_or, depth=depth + 1, segments=below
                )
            elif isinstance(value, list):
                condition = self.values_list(value, path)
                if not rules:
                    rules.append({})
                for rule in rules:
                    rule[path] = condition
            else:
                raise PatternError(
                    f"{path}: must be an array of match values or an object, not {_kind(value)}"
                )
        return rules

    def parse_or(
        self,
        branches: object,
        prefix: str,
        rules: list[dict[str, Condition]],
        *,
        depth: int,
        segments: int,
    ) -> list[dict[str, Condition]]:
        path = f"{prefix}.$or" if prefix else "$or"
        if not isinstance(branches, list):
            raise PatternError(f"{path}: must be an array of objects, not {_kind(branches)}")
        if len(branches) < 2:
            raise PatternError(f"{path}: needs at least 2 objects, got {len(branches)}")
        result: list[dict[str, Condition]] = []
        for i, branch in enumerate(branches):
            if not isinstance(branch, dict):
                raise PatternError(f"{path}[{i}]: must be an object, not {_kind(branch)}")
            copies = [dict(rule) for rule in rules] or [{}]
            result.extend(
                self.parse_object(
                    branch, prefix, copies, in_or=True, depth=depth + 1, segments=segments
                )
            )
            if len(result) > MAX_SUBRULES:
                raise PatternError(f"{path}: $or expands to more than {MAX_SUBRULES} combinations")
        return result

    def values_list(self, values: list[Any], path: str) -> Condition:
        if not values:
            raise PatternError(f"{path}: the array of match values must not be empty")
        self.count(path, len(values))
        matchers: set[Matcher] = set()
        absent_ok = False
        for value in values:
            if isinstance(value, dict):
                matcher = self.expression(value, path)
                if matcher is None:
                    absent_ok = True
                else:
                    matchers.add(matcher)
            elif isinstance(value, str):
                ip = parse_ip(value)
                matchers.add(Address(ip[0], ip[1], ip[1]) if ip else Exact(value))
            elif value is True or value is False or value is None:
                matchers.add(Exact(TRUE if value is True else FALSE if value is False else NULL))
            elif _is_number(value):
                text = _number_text(value, path)
                if isinstance(value, float) and comparable(text) is None:
                    raise PatternError(f"{path}: number {text} is not a finite JSON number")
                matchers.add(Exact(number_key(text)))
            else:
                raise PatternError(
                    f"{path}: match values must be strings, numbers, booleans, null or "
                    f"match expressions, not {_kind(value)}"
                )
        return Condition(path, frozenset(matchers), absent_ok)

    def expression(self, expr: dict[Any, Any], path: str) -> Matcher | None:
        """One ``{"operator": argument}``; None stands for ``{"exists": false}``."""
        if len(expr) != 1:
            raise PatternError(
                f"{path}: a match expression must have exactly one operator, got {len(expr)}"
            )
        ((op, arg),) = expr.items()
        handler = _OPERATORS.get(op)
        if handler is None:
            raise PatternError(f"{path}: unknown match operator {op!r}")
        return handler(arg, path)


def _string(arg: object, path: str, op: str) -> str:
    if not isinstance(arg, str):
        raise PatternError(f"{path}: {op} needs a string, not {_kind(arg)}")
    return arg


def _exactly(arg: object, path: str) -> Matcher:
    return Exact(_string(arg, path, "exactly"))


def _ignore_case_nested(arg: object, path: str, op: str) -> str | None:
    """The text of ``{"equals-ignore-case": text}`` under prefix/suffix, or None for a string."""
    if isinstance(arg, str):
        return None
    if not isinstance(arg, dict):
        raise PatternError(f"{path}: {op} needs a string or an object, not {_kind(arg)}")
    if len(arg) != 1 or "equals-ignore-case" not in arg:
        raise PatternError(
            f'{path}: {op} accepts only {{"equals-ignore-case": string}} as an object'
        )
    return _string(arg["equals-ignore-case"], path, f"{op}/equals-ignore-case")


def _prefix(arg: object, path: str) -> Matcher:
    folded = _ignore_case_nested(arg, path, "prefix")
    if folded is not None:
        return IgnoreCase.of("prefix", folded)
    return Prefix(_string(arg, path, "prefix"))


def _suffix(arg: object, path: str) -> Matcher:
    folded = _ignore_case_nested(arg, path, "suffix")
    if folded is not None:
        return IgnoreCase.of("suffix", folded)
    return Suffix(_string(arg, path, "suffix"))


def _equals_ignore_case(arg: object, path: str) -> Matcher:
    return IgnoreCase.of("equals", _string(arg, path, "equals-ignore-case"))


def _wildcard(arg: object, path: str) -> Matcher:
    return Wildcard.of(parse_wildcard(_string(arg, path, "wildcard"), path))


def _exists(arg: object, path: str) -> Matcher | None:
    if arg is True:
        return Exists()
    if arg is False:
        return None
    raise PatternError(f"{path}: exists needs true or false, not {_kind(arg)}")


def _cidr(arg: object, path: str) -> Matcher:
    return Address(*parse_cidr(_string(arg, path, "cidr"), path))


_NUMERIC_LOWER: Final = {">": True, ">=": False}
_NUMERIC_UPPER: Final = {"<": True, "<=": False}


def _numeric(arg: object, path: str) -> Matcher:
    if not isinstance(arg, list):
        raise PatternError(f'{path}: numeric needs an array like [">", 0, "<=", 5]')
    terms = list(arg)

    def bound(i: int) -> float:
        if i >= len(terms) or not _is_number(terms[i]):
            got = _kind(terms[i]) if i < len(terms) else "nothing"
            raise PatternError(
                f"{path}: numeric operator {terms[i - 1]!r} needs a number, got {got}"
            )
        return _comparable(terms[i], path, "numeric bound")

    if not terms or not isinstance(terms[0], str):
        raise PatternError(f"{path}: numeric must start with one of =, <, <=, >, >=")
    first = terms[0]
    if first == "=":
        value = bound(1)
        end = 2
        matcher: Matcher = Exact(value)
    elif first in _NUMERIC_UPPER:
        matcher = Numeric(high=bound(1), high_open=_NUMERIC_UPPER[first])
        end = 2
    elif first in _NUMERIC_LOWER:
        low = bound(1)
        if len(terms) == 2:
            return Numeric(low=low, low_open=_NUMERIC_LOWER[first])
        second = terms[2]
        if not isinstance(second, str) or second not in _NUMERIC_UPPER:
            raise PatternError(
                f"{path}: numeric range must continue with < or <= after the lower bound"
            )
        high = bound(3)
        if not low < high:
            raise PatternError(
                f"{path}: numeric range lower bound must be less than upper bound "
                f"({low!r} >= {high!r})"
            )
        matcher = Numeric(low, _NUMERIC_LOWER[first], high, _NUMERIC_UPPER[second])
        end = 4
    else:
        raise PatternError(f"{path}: unknown numeric operator {first!r}")
    if len(terms) != end:
        raise PatternError(f"{path}: too many elements in numeric expression")
    return matcher


_TEXT_TESTS: Final[dict[str, Callable[[str, str], Callable[[str], bool]]]] = {
    "prefix": lambda text, path: lambda value: value.startswith(text),
    "suffix": lambda text, path: lambda value: value.endswith(text),
    "equals-ignore-case": lambda text, path: ignore_case_test(text, "equals"),
    "wildcard": lambda text, path: wildcard_test(parse_wildcard(text, path)),
}


def _anything_but(arg: object, path: str) -> Matcher:
    if isinstance(arg, dict):
        return _anything_but_text(arg, path)
    items = arg if isinstance(arg, list) else [arg]
    if not items:
        raise PatternError(f"{path}: anything-but list must not be empty")
    strings = [item for item in items if isinstance(item, str)]
    numbers = [item for item in items if _is_number(item)]
    if len(strings) + len(numbers) != len(items) or (strings and numbers):
        raise PatternError(
            f"{path}: anything-but takes a string, a number, or a list of only strings or "
            "only numbers"
        )
    keys: set[Key] = set(strings)
    keys.update(_comparable(item, path, "anything-but number") for item in numbers)
    return AnythingBut(frozenset(keys))


def _anything_but_text(arg: dict[Any, Any], path: str) -> Matcher:
    if len(arg) != 1:
        raise PatternError(
            f"{path}: anything-but object must have exactly one operator, got {len(arg)}"
        )
    ((op, inner),) = arg.items()
    make = _TEXT_TESTS.get(op)
    if make is None:
        raise PatternError(
            f"{path}: anything-but supports prefix, suffix, equals-ignore-case and wildcard, "
            f"not {op!r}"
        )
    texts = inner if isinstance(inner, list) else [inner]
    if not texts:
        raise PatternError(f"{path}: anything-but/{op} list must not be empty")
    for text in texts:
        if not isinstance(text, str):
            raise PatternError(f"{path}: anything-but/{op} needs strings, not {_kind(text)}")
        if not text and op in ("prefix", "suffix"):
            raise PatternError(f"{path}: anything-but/{op} must not be empty")
    unique = tuple(sorted(set(texts)))
    checks = tuple(make(text, path) for text in unique)
    return AnythingButText(op, unique, checks)


_OPERATORS: Final[dict[str, Callable[[object, str], Matcher | None]]] = {
    "exactly": _exactly,
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _equals_ignore_case,
    "wildcard": _wildcard,
    "anything-but": _anything_but,
    "numeric": _numeric,
    "exists": _exists,
    "cidr": _cidr,
}
