"""A compiled JSONPath: its segments and how it evaluates, with Jayway's semantics and error
wording (definite paths yield one value or fail, indefinite ones yield every match)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Deep",
    "Field",
    "Filter",
    "Index",
    "JsonPath",
    "Length",
    "PathNotFound",
    "Segment",
    "Slice",
    "Wildcard",
]


class PathNotFound(Exception):
    """A definite path does not resolve against the document (Jayway wording)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ----------------------------------------------------------------------------------- segments


@dataclass(frozen=True, slots=True)
class Field:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Index:
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Wildcard:
    pass


@dataclass(frozen=True, slots=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True, slots=True)
class Filter:
    predicate: Callable[[Any, Any], bool]
    text: str


@dataclass(frozen=True, slots=True)
class Deep:
    inner: Field | Index | Wildcard | Slice | Filter


@dataclass(frozen=True, slots=True)
class Length:
    pass


Segment = Field | Index | Wildcard | Slice | Filter | Deep | Length


def _quote(name: str) -> str:
    return "['" + name + "']"


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled JSONPath. ``root`` is ``"$"``, ``"$$"`` or a variable name."""

    text: str
    root: str
    segments: tuple[Segment, ...]
    definite: bool

    @property
    def is_context(self) -> bool:
        return self.root == "$$"

    @property
    def variable(self) -> str | None:
        return None if self.root in ("$", "$$") else self.root

    @property
    def is_reference(self) -> bool:
        """A Reference Path: definite, only names and indexes."""
        return self.definite and all(isinstance(s, Field | Index) for s in self.segments)

    def evaluate(self, doc: Any, *, root: Any = None) -> Any:
        """Evaluate against ``doc`` (the value the path's root designates).

        Definite paths return the value or raise :class:`PathNotFound`; indefinite paths
        return the list of matches. ``root`` is the document ``$`` refers to inside filters.
        """
        if root is None:
            root = doc
        if self.definite:
            return self._definite(doc, root)
        values = [doc]
        for seg in self.segments:
            values = _apply(seg, values, root)
        return values

    def _definite(self, doc: Any, root: Any) -> Any:
        cur = doc
        walked = "$"
        last = len(self.segments) - 1
        for i, seg in enumerate(self.segments):
            if isinstance(seg, Field):
                name = seg.names[0]
                step = _quote(name)
                if isinstance(cur, dict):
                    if name not in cur:
                        if i == last:
                            raise PathNotFound(f"No results for path: {walked}{step}")
                        raise PathNotFound(f"Missing property in path {walked}{step}")
                    cur = cur[name]
                else:
                    raise PathNotFound(
                        f"Expected to find an object with property {step} in path {walked} "
                        f"but found '{_java_type(cur)}'. This is not a json object according "
                        "to the JsonProvider: "
                        "'com.jayway.jsonpath.spi.json.JacksonJsonNodeJsonProvider'."
                    )
                walked += step
            elif isinstance(seg, Index):
                idx = seg.indexes[0]
                step = f"[{idx}]"
                if not isinstance(cur, list):
                    raise PathNotFound(
                        f"Filter: {step} can only be applied to arrays. Current context is: "
                        f"{_compact(cur)}"
                    )
                if idx < 0:
                    idx += len(cur)
                if not 0 <= idx < len(cur):
                    raise PathNotFound(f"Index out of bounds when evaluating path {walked}{step}")
                cur = cur[idx]
                walked += step
            elif isinstance(seg, Length):
                if isinstance(cur, list | dict | str):
                    cur = len(cur)
                else:
                    raise PathNotFound(f"Invalid function length() on {_compact(cur)}")
            else:  # pragma: no cover - definite paths only hold the segments above
                raise AssertionError(seg)
        return cur


def _java_type(value: Any) -> str:
    if isinstance(value, str):
        return "java.lang.String"
    if isinstance(value, bool):
        return "java.lang.Boolean"
    if isinstance(value, int):
        return "java.lang.Integer"
    if isinstance(value, float):
        return "java.lang.Double"
    if isinstance(value, list):
        return "com.fasterxml.jackson.databind.node.ArrayNode"
    return "null"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _apply(seg: Segment, values: list[Any], root: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(seg, Deep):
        for v in values:
            stack = [v]
            nodes: list[Any] = []
            while stack:  # pre-order walk, like Jayway's deep scan
                node = stack.pop()
                nodes.append(node)
                stack.extend(reversed(_children(node)))
            out.extend(_apply(seg.inner, nodes, root))
        return out
    for v in values:
        if isinstance(seg, Field):
            if isinstance(v, dict):
                for name in seg.names:
                    if name in v:
                        out.append(v[name])
        elif isinstance(seg, Index):
            if isinstance(v, list):
                for idx in seg.indexes:
                    j = idx + len(v) if idx < 0 else idx
                    if 0 <= j < len(v):
                        out.append(v[j])
        elif isinstance(seg, Wildcard):
            out.extend(_children(v))
        elif isinstance(seg, Slice):
            if isinstance(v, list):
                out.extend(v[seg.start : seg.stop : seg.step])
        elif isinstance(seg, Filter):
            items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else []
            out.extend(item for item in items if seg.predicate(item, root))
        elif isinstance(seg, Length) and isinstance(v, list | dict | str):
            out.append(len(v))
    return out

