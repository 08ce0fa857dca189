"""Choice rules: JSONPath data-test expressions (``Variable`` + comparator, And/Or/Not).

JSONata choices use ``Condition`` and are evaluated by the interpreter through
:mod:`setpiece.workflows._jsonata`.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

from setpiece.workflows._context import parse_time
from setpiece.workflows._errors import RUNTIME, StatesError
from setpiece.workflows._paths import PathNotFound, compile_path
from setpiece.workflows._payload import Env, resolve_path

__all__ = ["COMPARATORS", "evaluate_rule"]

_KINDS = {"String": "string", "Numeric": "number", "Boolean": "boolean", "Timestamp": "timestamp"}
_OPS = ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")

#: comparator name -> (kind, operation, value-is-a-path)
COMPARATORS: dict[str, tuple[str, str, bool]] = {}
for _prefix, _kind in _KINDS.items():
    for _op in _OPS:
        if _kind == "boolean" and _op != "Equals":
            continue
        COMPARATORS[_prefix + _op] = (_kind, _op, False)
        COMPARATORS[_prefix + _op + "Path"] = (_kind, _op, True)
COMPARATORS["StringMatches"] = ("string", "Matches", False)
for _name in ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"):
    COMPARATORS[_name] = ("test", _name, False)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _timestamp(v: Any) -> _dt.datetime | None:
    return parse_time(v) if isinstance(v, str) else None


def _matches(value: str, pattern: str) -> bool:
    rx: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            rx.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        rx.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.fullmatch("".join(rx), value, re.S) is not None


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "Equals":
        return bool(a == b)
    if op == "LessThan":
        return bool(a < b)
    if op == "GreaterThan":
        return bool(a > b)
    if op == "LessThanEquals":
        return bool(a <= b)
    return bool(a >= b)


def _test(kind: str, op: str, value: Any, expected: Any) -> bool:
    if kind == "test":
        if op == "IsNull":
            result = value is None
        elif op == "IsNumeric":
            result = _is_number(value)
        elif op == "IsString":
            result = isinstance(value, str)
        elif op == "IsBoolean":
            result = isinstance(value, bool)
        else:  # IsTimestamp
            result = _timestamp(value) is not None
        return result == bool(expected)
    if kind == "string":
        if not (isinstance(value, str) and isinstance(expected, str)):
            return False
        if op == "Matches":
            return _matches(value, expected)
        return _compare(op, value, expected)
    if kind == "number":
        if not (_is_number(value) and _is_number(expected)):
            return False
        return _compare(op, value, expected)
    if kind == "boolean":
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    # timestamp
    a, b = _timestamp(value), _timestamp(expected)
    if a is None or b is None:
        return False
    return _compare(op, a, b)


def evaluate_rule(rule: Mapping[str, Any], env: Env) -> bool:
    """Evaluate a JSONPath choice rule (validated beforehand) against ``env``."""
    if "And" in rule:
        return all(evaluate_rule(r, env) for r in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(r, env) for r in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], env)
    variable = rule["Variable"]
    for name in rule:
        spec = COMPARATORS.get(name)
        if spec is not None:
            kind, op, is_path = spec
            expected = rule[name]
            break
    else:  # pragma: no cover - validation guarantees a comparator
        raise StatesError(RUNTIME, "choice rule without a comparator")
    path = compile_path(variable)
    try:
        value = resolve_path(path, env)
    except PathNotFound:
        if op == "IsPresent":
            return not expected
        raise StatesError(
            RUNTIME,
            f"Invalid path '{variable}': The choice state's condition path references an "
            "invalid value.",
        ) from None
    if op == "IsPresent":
        if not path.definite and value == []:
            return not expected
        return bool(expected)
    if is_path:
        try:
            expected = resolve_path(compile_path(expected), env)
        except PathNotFound:
            raise StatesError(
                RUNTIME,
                f"Invalid path '{expected}': The choice state's condition path references an "
                "invalid value.",
            ) from None
    return _test(kind, op, value, expected)
