"""JSONata for ``"QueryLanguage": "JSONata"`` states, on the ``jsonata-python`` library.

A field value ``"{% expr %}"`` is an expression; anything else is a literal (objects and arrays
are walked, so expressions can sit at any depth). Expressions see ``$states`` (``input``,
``context``, ``result``, ``errorOutput``) and the workflow variables, plus the functions Step
Functions adds to JSONata: ``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid`` and
``$parse``.

``jsonata-python`` is the ``workflows`` extra, imported on the first JSONata expression: a
workflow without one runs without it, and one with it says what to install (:func:`_library`).

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

from setpiece.errors import ConfigError
from setpiece.workflows._errors import QUERY_EVALUATION_ERROR, StatesError
from setpiece.workflows._intrinsics import _HASHES
from setpiece.workflows._limits import (
    DEFAULT_LIMITS,
    LimitExceeded,
    WorkflowLimits,
    json_size_over,
)

__all__ = ["evaluate_expression", "is_expression", "resolve", "strip", "syntax_error"]


@functools.cache
def _library() -> tuple[Any, Any]:
    """The ``jsonata`` module and its ``Utils``, imported on first use."""
    try:
        import jsonata  # untyped library: pyproject's mypy override ignores its missing stubs
        from jsonata.utils import Utils
    except ImportError:
        raise ConfigError(
            'JSONata expressions ("QueryLanguage": "JSONata") need jsonata-python: '
            "pip install 'setpiece[workflows]'"
        ) from None
    return jsonata, Utils


def _utils() -> Any:
    return _library()[1]


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
    return _utils().create_sequence_from_iter(values)




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


@functools.lru_cache(maxsize=2048)
def _compile(expr: str, limit: int = DEFAULT_LIMITS.max_value_size) -> Any:
    jsonata, _ = _library()
    from setpiece.workflows._jsonata_builtins import bound_builtins  # needs the library

    compiled = jsonata.Jsonata(expr)
    compiled.set_output_convert_nulls(False)
    for name, fn in _EXTRAS.items():
        compiled.register_lambda(name, fn)
    bound_builtins(compiled, limit)
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
            raise LimitExceeded(self.error)

    def exit(self, expr: Any, input: Any, env: Any, result: Any) -> None:
        if isinstance(result, str | list) and len(result) > self.limit:
            kind = "a string" if isinstance(result, str) else "an array"
            self.error = (f"A step built {kind} of {len(result)} "
                          f"{'characters' if isinstance(result, str) else 'items'}, over the "
                          f"limit of {self.limit} (WorkflowLimits.max_value_size)")
        if self.error is not None:
            raise LimitExceeded(self.error)


def syntax_error(expr: str) -> str | None:
    """The parse error of a JSONata expression, or None if it parses (ConfigError without the
    library)."""
    _library()
    try:
        _compile(expr)
    except Exception as e:  # the library raises JException (a RuntimeError) and others
        return str(e)
    return None


# --------------------------------------------------------------------------------- conversion


def _to_jsonata(value: Any) -> Any:
    """Python JSON -> JSONata values (``None`` must become JSONata ``null``)."""
    if value is None:
        return _utils().NULL_VALUE
    if isinstance(value, dict):
        return {k: _to_jsonata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_jsonata(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSONata values -> plain Python JSON (integral floats become ints, as in JavaScript).

    Inside structures ``None`` is JSON null (JSONata itself drops undefined members)."""
    if value is None or value is _utils().NULL_VALUE:
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
    null = _utils().NULL_VALUE  # ConfigError, not a query error, when the library is missing
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
        frame = {k: null if v is None else v for k, v in bindings.items()}
        guard = _Guard(limits)
        frame["__evaluate_entry"] = guard.entry
        frame["__evaluate_exit"] = guard.exit
        result = compiled.evaluate(None, frame)
        if guard.error is not None:  # raised inside, and caught by the library
            raise LimitExceeded(guard.error)
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
