"""Schema discovery: a JSON Schema proposed from the data of events that flowed.

Like EventBridge schema discovery: every sample's data is folded into one schema — the types
seen at each path, the properties of objects (required when every sample has them), the items of
arrays, ``date-time`` for strings that all are RFC 3339 times. ``integer`` and ``number`` seen
at one path become ``number``; several other types become a list of types, or an ``anyOf`` when
objects or arrays are among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from setpiece.schemas.schema import DRAFT_2020_12

__all__ = ["infer"]

_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_ORDER = ("null", "boolean", "integer", "number", "string", "array", "object")


class _Shape:
    """What was seen at one path."""

    __slots__ = ("count", "items", "objects", "props", "strings", "times", "types")

    def __init__(self) -> None:
        self.count = 0
        self.types: set[str] = set()
        self.props: dict[str, _Shape] = {}
        self.items: _Shape | None = None
        self.strings = 0
        self.times = 0
        self.objects = 0

    def add(self, value: Any) -> None:
        self.count += 1
        if value is None:
            self.types.add("null")
        elif isinstance(value, bool):
            self.types.add("boolean")
        elif isinstance(value, int):
            self.types.add("integer")
        elif isinstance(value, float):
            self.types.add("number")
        elif isinstance(value, str):
            self.types.add("string")
            self.strings += 1
            self.times += bool(_DATE_TIME.fullmatch(value))
        elif isinstance(value, list):
            self.types.add("array")
            if self.items is None:
                self.items = _Shape()
            for item in value:
                self.items.add(item)
        elif isinstance(value, dict):
            self.types.add("object")
            self.objects += 1
            for key, item in value.items():
                self.props.setdefault(str(key), _Shape()).add(item)

    def schema(self) -> dict[str, Any]:
        types = set(self.types)
        if {"integer", "number"} <= types:
            types.discard("integer")
        parts = [self._one(t) for t in _ORDER if t in types]
        if not parts:
            return {}
        if len(parts) == 1:
            return parts[0]
        if all(set(p) == {"type"} for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}

    def _one(self, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind}
        if kind == "string" and self.strings and self.times == self.strings:
            out["format"] = "date-time"
        elif kind == "array" and self.items is not None and self.items.count:
            out["items"] = self.items.schema()
        elif kind == "object":
            out["properties"] = {k: v.schema() for k, v in sorted(self.props.items())}
            required = sorted(k for k, v in self.props.items() if v.count == self.objects)
            if required:
                out["required"] = required
        return out


def infer(samples: Iterable[Any], *, title: str | None = None) -> dict[str, Any]:
    """A JSON Schema (2020-12) that every one of ``samples`` fits."""
    shape = _Shape()
    for sample in samples:
        shape.add(sample)
    return {"$schema": DRAFT_2020_12, **({"title": title} if title else {}), **shape.schema()}
