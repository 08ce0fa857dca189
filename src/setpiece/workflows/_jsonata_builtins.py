"""JSONata built-ins bounded in size and time before they build (see ``_jsonata``).

Imported only once a JSONata expression is compiled, since it needs the ``jsonata-python``
library (the ``workflows`` extra): ``$pad``, ``$join``, ``$replace`` and ``$string`` check their
arguments against ``WorkflowLimits.max_value_size`` first; ``$distinct`` runs in linear time for
scalars.
"""

from __future__ import annotations

from typing import Any

import jsonata  # untyped library: pyproject's mypy override ignores its missing stubs
from jsonata.utils import Utils

from setpiece.workflows._limits import LimitExceeded, json_size_over

__all__ = ["bound_builtins"]


class _Bounded(jsonata.Jsonata.JNativeFunction):  # type: ignore[misc]  # untyped base
    """A JSONata built-in whose arguments are checked before it runs."""

    def __init__(self, native: Any, check: Any, limit: int) -> None:
        self.__dict__.update(native.__dict__)
        self._check = check
        self._limit = limit

    def call(self, input: Any, args: Any) -> Any:
        self._check(list(args or ()), self._limit)
        return super().call(input, args)


def _over(what: str, size: int, limit: int) -> LimitExceeded:
    return LimitExceeded(f"{what} would be {size} long, over the limit of {limit} "
                     "(WorkflowLimits.max_value_size)")


def _arg(args: list[Any], i: int) -> Any:
    return args[i] if i < len(args) else None


def _check_pad(args: list[Any], limit: int) -> None:
    width = _arg(args, 1)
    if isinstance(width, int | float) and not isinstance(width, bool) and abs(width) > limit:
        raise _over("$pad's result", int(abs(width)), limit)


def _check_join(args: list[Any], limit: int) -> None:
    strs, sep = _arg(args, 0), _arg(args, 1)
    if not isinstance(strs, list):
        return
    size = len(sep) * max(len(strs) - 1, 0) if isinstance(sep, str) else 0
    if size > limit:
        raise _over("$join's result", size, limit)
    for s in strs:
        size += len(s) if isinstance(s, str) else 0
        if size > limit:
            raise _over("$join's result", size, limit)


def _check_replace(args: list[Any], limit: int) -> None:
    text, pattern, repl, count = (_arg(args, i) for i in range(4))
    if not isinstance(text, str) or not isinstance(repl, str):
        return  # a replacement function's results are checked as it returns them
    most = count if isinstance(count, int | float) and not isinstance(count, bool) else None
    refs = repl.count("$")  # each may insert a match or a group (no longer than the match)
    size = len(text)
    if isinstance(pattern, str):
        if not pattern:
            return
        matches: Any = (pattern for _ in range(text.count(pattern)))
    elif hasattr(pattern, "finditer"):
        matches = (m.group(0) for m in pattern.finditer(text))
    else:
        return
    for found, match in enumerate(matches):
        if most is not None and found >= most:
            break
        size += len(repl) + refs * len(match) - len(match)
        if size > limit:
            raise _over("$replace's result", size, limit)


def _check_string(args: list[Any], limit: int) -> None:
    value = _arg(args, 0)
    if not isinstance(value, str) and json_size_over(value, limit):
        raise LimitExceeded(f"$string's result would be over the limit of {limit} characters "
                        "(WorkflowLimits.max_value_size)")


#: $distinct compares each object or array with every kept one: bound the square.
_DISTINCT_WORK = 20_000_000


class _Distinct(jsonata.Jsonata.JNativeFunction):  # type: ignore[misc]  # untyped base
    """``$distinct`` in linear time for scalars (the library compares every pair), with the
    same equality (Python's ``==``, as the library's ``in``); objects and arrays are still
    compared pairwise, so their count is bounded."""

    def __init__(self, native: Any) -> None:
        self.__dict__.update(native.__dict__)

    def call(self, input: Any, args: Any) -> Any:
        arr = args[0] if args else None
        if arr is None or not isinstance(arr, list) or len(arr) <= 1:
            return arr
        nested = sum(1 for el in arr if isinstance(el, dict | list))
        if nested**2 > _DISTINCT_WORK:
            raise LimitExceeded(f"$distinct of {nested} objects or arrays is too slow (at most "
                            f"{int(_DISTINCT_WORK ** 0.5)})")
        results = Utils.create_sequence() if isinstance(arr, Utils.JList) else []
        seen: set[Any] = set()
        kept: list[Any] = []
        for el in arr:
            try:
                if el in seen:
                    continue
                seen.add(el)
            except TypeError:  # unhashable: an object or an array
                if el in kept:
                    continue
                kept.append(el)
            results.append(el)
        return results


_CHECKED = {
    "pad": _check_pad,
    "join": _check_join,
    "replace": _check_replace,
    "string": _check_string,
}


def bound_builtins(compiled: Any, limit: int) -> None:
    """Replace the built-ins of a compiled expression with their bounded forms."""
    for name, check in _CHECKED.items():
        native = compiled.environment.lookup(name)
        if isinstance(native, jsonata.Jsonata.JNativeFunction):
            compiled.register_function(name, _Bounded(native, check, limit))
    native = compiled.environment.lookup("distinct")
    if isinstance(native, jsonata.Jsonata.JNativeFunction):
        compiled.register_function("distinct", _Distinct(native))
