"""JSONPath-mode data flow: resolving paths and payload templates.

A payload template (``Parameters``, ``ResultSelector``, ``ItemSelector``, JSONPath ``Assign``)
is JSON whose keys ending in ``.$`` take their value from a path (``$.x``), the context object
(``$$.x``), a variable (``$name``) or an intrinsic function (``States.Format(...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from setpiece.workflows import _intrinsics
from setpiece.workflows._context import Scope
from setpiece.workflows._errors import RUNTIME, StatesError
from setpiece.workflows._limits import DEFAULT_LIMITS
from setpiece.workflows._paths import JsonPath, PathNotFound, compile_path

__all__ = ["Env", "evaluate_template", "resolve_path", "resolve_value"]


@dataclass(slots=True)
class Env:
    """What a JSONPath expression is evaluated against."""

    input: Any
    context: Callable[[], dict[str, Any]]
    scope: Scope
    max_size: int = DEFAULT_LIMITS.max_value_size  # of what an intrinsic function builds


def _doc(path: JsonPath, env: Env) -> Any:
    if path.root == "$":
        return env.input
    if path.root == "$$":
        return env.context()
    found, value = env.scope.lookup(path.root)
    if not found:
        raise StatesError(
            RUNTIME,
            f"The variable '${path.root}' referenced by the JSONPath '{path.text}' is not defined.",
        )
    return value


def resolve_path(path: JsonPath, env: Env) -> Any:
    """Evaluate a path; a missing definite path raises :class:`PathNotFound`."""
    return path.evaluate(_doc(path, env), root=env.input)


def resolve_value(text: str, env: Env, field: str) -> Any:
    """A ``.$`` value: a path, a context path, a variable or an intrinsic function."""
    if _intrinsics.is_intrinsic(text):
        call = _intrinsics.parse(text)

        def lookup(p: JsonPath) -> Any:
            try:
                return resolve_path(p, env)
            except PathNotFound:
                raise _not_found(p.text, field, env) from None

        return _intrinsics.evaluate(call, lookup, env.max_size)
    path = compile_path(text)
    try:
        return resolve_path(path, env)
    except PathNotFound:
        raise _not_found(text, field, env) from None


def _not_found(text: str, field: str, env: Env) -> StatesError:
    return StatesError(
        RUNTIME,
        f"The JSONPath '{text}' specified for the field '{field}' could not be found in the "
        f"input '{_intrinsics.json_text(env.input)}'",
    )


def evaluate_template(template: Any, env: Env) -> Any:
    """Evaluate a payload template against ``env``."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = resolve_value(value, env, key)
            else:
                out[key] = evaluate_template(value, env)
        return out
    if isinstance(template, list):
        return [evaluate_template(v, env) for v in template]
    return template
