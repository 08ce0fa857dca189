"""Limits on the JSON that setpiece accepts, defined once for every edge.

Every JSON value that comes in (an event's ``data`` and extension values, an HTTP route's body,
a workflow task's output) nests at most :data:`MAX_DEPTH` arrays or objects deep. Deeper values
would make recursive code further on (pattern matching, path evaluation, the JSON decoder
itself) fail on them, so they are refused where they arrive, with an error naming the limit.

JSON has no NaN or Infinity: a float that is not finite is refused too, rather than silently
becoming ``null`` on the wire.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgspec

__all__ = ["MAX_DEPTH", "DepthError", "check_depth", "decode", "depth_exceeds", "non_finite"]

MAX_DEPTH = 128
"""How deep a JSON value may nest: each array or object is one level (``{"a": [1]}`` is 2)."""


class DepthError(ValueError):
    """A JSON value nests deeper than :data:`MAX_DEPTH`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: nested deeper than the limit of {MAX_DEPTH} levels")


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects deep (iterative: no recursion)."""
    if type(value) not in (dict, list, tuple):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        for child in children:
            if type(child) in (dict, list, tuple):
                stack.append((child, depth + 1))
    return False


def non_finite(value: Any, path: str) -> str | None:
    """The path of the first float in ``value`` that is NaN or infinite, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return where
        elif kind is dict:
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif kind is list or kind is tuple:
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return where
    return None


def decode(raw: bytes | str, what: str, *, extra_levels: int = 0) -> Any:
    """``msgspec.json.decode`` for input from outside, refusing values nested too deep.

    ``extra_levels``: the levels of the document around the value the limit applies to (an
    event's envelope is one, a batch of events two). Raises :class:`DepthError` (a ValueError)
    or ``msgspec.DecodeError``.
    """
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:  # the decoder's own guard: far deeper than the limit
        raise DepthError(what) from None
    if _may_exceed(raw, MAX_DEPTH + extra_levels) and depth_exceeds(
        value, MAX_DEPTH + extra_levels
    ):
        raise DepthError(what)
    return value


def check_depth(raw: bytes | str, what: str) -> None:
    """Raise :class:`DepthError` if the JSON text nests deeper than the limit (for text another
    decoder, typed or not, reads next). Cheap unless the text holds many brackets; text that is
    not JSON is left for that decoder to report."""
    if _may_exceed(raw, MAX_DEPTH):
        with contextlib.suppress(msgspec.DecodeError):
            decode(raw, what)


def _may_exceed(raw: bytes | str, limit: int) -> bool:
    """Cheap: a value cannot nest deeper than the brackets its text holds."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > limit
    return raw.count(b"[") + raw.count(b"{") > limit


def check_encoded(encoded: bytes, parts: dict[str, Any]) -> tuple[str, str] | None:
    """For an encoded value and its parts by name: ``(field, problem)`` if a part nests too
    deep or holds a non-finite float (which encodes as ``null``), else None. Cheap when the
    text has few brackets and no ``null``."""
    if _may_exceed(encoded, MAX_DEPTH):
        for name, part in parts.items():
            if depth_exceeds(part):
                return name, f"nested deeper than the limit of {MAX_DEPTH} levels"
    if b"null" in encoded:
        for name, part in parts.items():
            where = non_finite(part, name)
            if where is not None:
                return where, "NaN and Infinity are not JSON; send a number, a string or null"
    return None
