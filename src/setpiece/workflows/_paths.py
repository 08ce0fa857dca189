"""JSONPath as Step Functions evaluates it (the Jayway dialect), plus ResultPath writes.

Supported syntax: ``$`` (the input), ``$$`` (the context object), ``$name`` (a workflow
variable); ``.name``, ``['name']`` / ``["name"]``, ``['a','b']``, ``.*`` / ``[*]``, ``..name``
(deep scan), ``[n]`` (negative counts from the end), ``[n,m]``, ``[start:end:step]``, filters
``[?(@.price < 10 && @.tag == 'x')]`` (``== != < <= > >= =~ in nin``, ``&& || !``, existence)
and the ``length()`` function.

A *definite* path (no wildcard, deep scan, slice, union or filter) yields one value and fails if
it is missing; an indefinite path yields a list of every match (possibly empty).

This module is the face of JSONPath for the rest of the package: the compiled form and its
evaluation live in :mod:`~setpiece.workflows._compiled_path`, the parser in
:mod:`~setpiece.workflows._path_parser`; ResultPath writes are here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from setpiece.workflows._compiled_path import Field, Index, JsonPath, PathNotFound, Segment
from setpiece.workflows._path_parser import PathSyntaxError, compile_path

__all__ = [
    "JsonPath",
    "PathNotFound",
    "PathSyntaxError",
    "compile_path",
    "set_result_path",
]


# ------------------------------------------------------------------------------- ResultPath


def set_result_path(doc: Any, path: JsonPath, value: Any) -> Any:
    """Return a copy of ``doc`` with ``value`` written at the reference path ``path``.

    Missing objects along the way are created. Raises ``ValueError`` when the path cannot be
    applied (for instance writing a field into an array).
    """
    if not path.segments:
        return value
    return _set(doc, path.segments, value)


def _set(node: Any, segments: tuple[Segment, ...], value: Any) -> Any:
    seg = segments[0]
    rest = segments[1:]
    if isinstance(seg, Field):
        name = seg.names[0]
        base: dict[str, Any] = dict(node) if isinstance(node, Mapping) else {}
        if (
            node is not None
            and not isinstance(node, Mapping)
            and not isinstance(node, str | int | float | bool)
        ):
            raise ValueError(f"cannot set field {name!r} on an array")
        base[name] = _set(base.get(name), rest, value) if rest else value
        return base
    if isinstance(seg, Index):
        if not isinstance(node, list):
            raise ValueError("cannot index into a non-array")
        idx = seg.indexes[0]
        arr = list(node)
        if idx < 0:
            idx += len(arr)
        if not 0 <= idx < len(arr):
            raise ValueError("array index out of bounds")
        arr[idx] = _set(arr[idx], rest, value) if rest else value
        return arr
    raise ValueError("ResultPath must be a reference path")
