"""JSONata for ``"QueryLanguage": "JSONata"`` states, on the ``jsonata-python`` library.

A field value ``"{% expr %}"`` is an expression; anything else is a literal (objects and arrays
are walked, so expressions can sit at any depth). Expressions see ``$states`` (``input``,
``context``, ``result``, ``errorOutput``) and the workflow variables, plus the functions Step
Functions adds to JSONata: ``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid`` and
``$parse``.

Every evaluation is bounded (see :class:`~setpiece.workflows.WorkflowLimits`): it may run for
``expression_seconds`` (checked at every step of the evaluator), and no string or array it
builds may exceed ``max_value_size`` — checked before building where the size is known in
advance (ranges are lazy and checked when made; ``$pad``, ``$join``, ``$replace`` and
``$string`` check their arguments first; ``$distinct`` is linear for scalars), otherwise as
soon as a step returns it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jsonata  # untyped library: pyproject's mypy override ignores its missing stubs
from jsonata.utils import Utils

from setpiece.workflows._errors import QUERY_EVALUATION_ERROR, StatesError
from setpiece.workflows._intrinsics import _HASHES
from setpiece.workflows._limits import DEFAULT_LIMITS, WorkflowLimits, json_size_over

__all__ = ["evaluate_expression", "is_expression", "resolve", "strip", "syntax_error"]


def is_expression(value: Any) -> bool:
    """Is ``value`` a ``{% ... %}`` JSONata string?"""
    return (
        isinstance(value, str)
        and value.startswith("{%")
        and value.endswith("%}")
        and len(value) >= 4
    )


def strip(value: str) -> str:
    """The expression inside ``{% ... %}``."""
    return value[2:-2].strip()


# ---------------------------------------------------------------------- Step Functions extras


def _partition(array: Any, size: Any) -> Any:
    if not isinstance(array, list) or not isinstance(size, int | float) or size < 1:
        raise ValueError("$partition expects an array and a positive chunk size")
    n = int(size)
    return [list(array[i : i + n]) for i in range(0, len(array), n)]


def _range(start: Any, end: Any, step: Any) -> Any:
    a, b, s = int(start), int(end), int(step)
    if s == 0:
        raise ValueError("$range step cannot be 0")
    count = (b - a) // s + 1  # counted before anything is built
    if count > 1000:
        raise ValueError("$range would produce more than 1000 items")
    values = range(a, b + (1 if s > 0 else -1), s)
    return Utils.create_sequence_from_iter(values)




def _hash(value: Any, algorithm: Any = "SHA-256") -> str:
    if algorithm not in _HASHES:
        raise ValueError(f"$hash: unsupported algorithm {algorithm!r}")
    text = value if isinstance(value, str) else json.dumps(_plain(value), separators=(",", ":"))
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _random(seed: Any = None) -> float:
    return random.Random(seed).random() if seed is not None else random.random()


def _uuid() -> str:
    return str(uuid.uuid4())


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("$parse expects a string")
    return _to_jsonata(json.loads(text))


_EXTRAS = {
    "partition": _partition,
    "range": _range,
    "hash": _hash,
    "random": _random,
    "uuid": _uuid,
    "parse": _parse,
}


class _TooLarge(Exception):
    """A built-in was asked to build a value over the size limit."""


class _Bounded(jsonata.Jsonata.JNativeFunction):  # type: ignore[misc]  # untyped base
    """A JSONata built-in whose arguments are checked before it runs."""

    def __init__(self, native: Any, check: Any, limit: int) -> None:
        self.__dict__.update(native.__dict__)
        self._check = check
        self._limit = limit

    def call(self, input: Any, args: Any) -> Any:
        self._check(list(args or ()), self._limit)
        return super().call(input, args)


def _over(what: str, size: int, limit: int) -> _TooLarge:
    return _TooLarge(f"{what} would be {size} long, over the limit of {limit} "
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
        raise _TooLarge(f"$string's result would be over the limit of {limit} characters "
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
            raise _TooLarge(f"$distinct of {nested} objects or arrays is too slow (at most "
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


@functools.lru_cache(maxsize=2048)
def _compile(expr: str, limit: int = DEFAULT_LIMITS.max_value_size) -> Any:
    compiled = jsonata.Jsonata(expr)
    compiled.set_output_convert_nulls(False)
    for name, fn in _EXTRAS.items():
        compiled.register_lambda(name, fn)
    for name, check in _CHECKED.items():
        native = compiled.environment.lookup(name)
        if isinstance(native, jsonata.Jsonata.JNativeFunction):
            compiled.register_function(name, _Bounded(native, check, limit))
    native = compiled.environment.lookup("distinct")
    if isinstance(native, jsonata.Jsonata.JNativeFunction):
        compiled.register_function("distinct", _Distinct(native))
    return compiled


class _Guard:
    """Bounds one evaluation: called by the evaluator before and after every step."""

    __slots__ = ("deadline", "error", "limit", "seconds")

    def __init__(self, limits: WorkflowLimits) -> None:
        self.seconds = limits.expression_seconds
        self.deadline = time.monotonic() + self.seconds
        self.limit = limits.max_value_size
        self.error: str | None = None

    def entry(self, expr: Any, input: Any, env: Any) -> None:
        if self.error is None and time.monotonic() > self.deadline:
            self.error = (f"The evaluation took longer than {self.seconds:g}s "
                          "(WorkflowLimits.expression_seconds)")
        if self.error is not None:
            raise _TooLarge(self.error)

    def exit(self, expr: Any, input: Any, env: Any, result: Any) -> None:
        if isinstance(result, str | list) and len(result) > self.limit:
            kind = "a string" if isinstance(result, str) else "an array"
            self.error = (f"A step built {kind} of {len(result)} "
                          f"{'characters' if isinstance(result, str) else 'items'}, over the "
                          f"limit of {self.limit} (WorkflowLimits.max_value_size)")
        if self.error is not None:
            raise _TooLarge(self.error)


def syntax_error(expr: str) -> str | None:
    """The parse error of a JSONata expression, or None if it parses."""
    try:
        _compile(expr)
    except Exception as e:  # the library raises JException (a RuntimeError) and others
        return str(e)
    return None


# --------------------------------------------------------------------------------- conversion


def _to_jsonata(value: Any) -> Any:
    """Python JSON -> JSONata values (``None`` must become JSONata ``null``)."""
    if value is None:
        return Utils.NULL_VALUE
    if isinstance(value, dict):
        return {k: _to_jsonata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_jsonata(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSONata values -> plain Python JSON (integral floats become ints, as in JavaScript).

    Inside structures ``None`` is JSON null (JSONata itself drops undefined members)."""
    if value is Utils.NULL_VALUE or value is None:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(f"a JSONata expression returned a {type(value).__name__}, not JSON")


def evaluate_expression(
    expr: str, bindings: Mapping[str, Any], field: str, limits: WorkflowLimits = DEFAULT_LIMITS
) -> Any:
    """Evaluate one expression; errors are ``States.QueryEvaluationError`` naming ``field``."""
    try:
        compiled = _compile(expr, limits.max_value_size)
    except Exception as e:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{expr}' specified for the field '{field}' could not be "
            f"parsed. {_code(e)}{e}",
        ) from None
    try:
        # The library reads a None nested in dicts and lists as null, but a variable bound to
        # None as undefined: only top-level values need converting.
        frame = {k: Utils.NULL_VALUE if v is None else v for k, v in bindings.items()}
        guard = _Guard(limits)
        frame["__evaluate_entry"] = guard.entry
        frame["__evaluate_exit"] = guard.exit
        result = compiled.evaluate(None, frame)
        if guard.error is not None:  # raised inside, and caught by the library
            raise _TooLarge(guard.error)
    except RecursionError:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{expr}' specified for the field '{field}' threw an error "
            "during evaluation. Stack overflow",
        ) from None
    except Exception as e:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{expr}' specified for the field '{field}' threw an error "
            f"during evaluation. {_code(e)}{e}",
        ) from None
    if result is None:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{expr}' specified for the field '{field}' returned nothing "
            "(undefined).",
        )
    if json_size_over(result, limits.max_value_size):
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{expr}' specified for the field '{field}' returned a "
            f"value over the limit of {limits.max_value_size} characters of JSON "
            "(WorkflowLimits.max_value_size).",
        )
    try:
        return _plain(result)
    except TypeError as e:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{expr}' specified for the field '{field}' returned a "
            f"value that is not JSON: {e}",
        ) from None


def _code(e: Exception) -> str:
    code = getattr(e, "error", None)
    return f"{code}: " if isinstance(code, str) else ""


def resolve(
    template: Any, bindings: Mapping[str, Any], field: str, limits: WorkflowLimits = DEFAULT_LIMITS
) -> Any:
    """Evaluate every ``{% %}`` string inside ``template`` (objects and arrays are walked)."""
    if isinstance(template, str):
        if is_expression(template):
            return evaluate_expression(strip(template), bindings, field, limits)
        return template
    if isinstance(template, dict):
        return {k: resolve(v, bindings, f"{field}/{k}", limits) for k, v in template.items()}
    if isinstance(template, list):
        return [resolve(v, bindings, f"{field}[{i}]", limits) for i, v in enumerate(template)]
    return template
