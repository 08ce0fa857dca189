"""Compatibility of two JSON Schemas, with the Confluent Schema Registry's meanings.

``BACKWARD``: a consumer reading with the new schema can read every event written with the
previous one (the new schema accepts at least what the previous accepted). ``FORWARD`` is the
reverse (``FORWARD(previous, new) == BACKWARD(new, previous)``), ``FULL`` is both. The
``_TRANSITIVE`` forms apply the same check against every earlier version instead of the latest
(the registry does that: see :class:`~setpiece.schemas.Compatibility`); ``NONE`` accepts
anything.

The check walks both documents side by side and lists the differences (a field removed, a
maximum lowered, an enum narrowed, ...), each of which either keeps old data readable or does
not, the way the registry's JSON Schema provider does. :func:`changes` returns them all with
their JSON paths; :func:`is_compatible` says whether none breaks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from setpiece.schemas._model import Node, read_schema

__all__ = ["MODES", "Change", "breaking_changes", "changes", "is_compatible"]

MODES = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
         "FULL_TRANSITIVE", "NONE")


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two schemas: where (a JSON path), what, and whether it breaks."""

    path: str
    rule: str
    compatible: bool

    def __str__(self) -> str:
        return f"{self.path}: {self.rule.replace('_', ' ').lower()}"


# Differences that keep every event written with the previous schema valid under the new one.
_COMPATIBLE = frozenset({
    "TYPE_EXTENDED", "SCHEMA_REMOVED",
    "MAX_LENGTH_INCREASED", "MAX_LENGTH_REMOVED", "MIN_LENGTH_DECREASED", "MIN_LENGTH_REMOVED",
    "PATTERN_REMOVED", "FORMAT_REMOVED",
    "MAXIMUM_INCREASED", "MAXIMUM_REMOVED", "MINIMUM_DECREASED", "MINIMUM_REMOVED",
    "EXCLUSIVE_MAXIMUM_INCREASED", "EXCLUSIVE_MAXIMUM_REMOVED", "EXCLUSIVE_MINIMUM_DECREASED",
    "EXCLUSIVE_MINIMUM_REMOVED", "MULTIPLE_OF_REDUCED", "MULTIPLE_OF_REMOVED",
    "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED", "REQUIRED_ATTRIBUTE_REMOVED",
    "DEPENDENCY_ARRAY_NARROWED", "DEPENDENCY_ARRAY_REMOVED", "DEPENDENCY_SCHEMA_REMOVED",
    "MAX_PROPERTIES_INCREASED", "MAX_PROPERTIES_REMOVED", "MIN_PROPERTIES_DECREASED",
    "MIN_PROPERTIES_REMOVED", "PROPERTY_NAMES_REMOVED",
    "ADDITIONAL_PROPERTIES_ADDED", "ADDITIONAL_PROPERTIES_EXTENDED",
    "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "MAX_ITEMS_INCREASED", "MAX_ITEMS_REMOVED", "MIN_ITEMS_DECREASED", "MIN_ITEMS_REMOVED",
    "MAX_CONTAINS_INCREASED", "MAX_CONTAINS_REMOVED", "MIN_CONTAINS_DECREASED",
    "MIN_CONTAINS_REMOVED", "CONTAINS_REMOVED", "UNIQUE_ITEMS_REMOVED",
    "ADDITIONAL_ITEMS_ADDED", "ADDITIONAL_ITEMS_EXTENDED",
    "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
    "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ENUM_ARRAY_EXTENDED", "COMBINED_TYPE_EXTENDED", "PRODUCT_TYPE_NARROWED",
    "SUM_TYPE_EXTENDED", "NOT_TYPE_NARROWED",
})

# (keyword, rule stem): whether INCREASED or DECREASED keeps old data valid is in _COMPATIBLE
_BOUNDS = {
    "string": (("maxLength", "MAX_LENGTH"), ("minLength", "MIN_LENGTH")),
    "number": (("maximum", "MAXIMUM"), ("minimum", "MINIMUM"),
               ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM"),
               ("exclusiveMinimum", "EXCLUSIVE_MINIMUM")),
    "object": (("maxProperties", "MAX_PROPERTIES"),
               ("minProperties", "MIN_PROPERTIES")),
    "array": (("maxItems", "MAX_ITEMS"), ("minItems", "MIN_ITEMS"),
              ("maxContains", "MAX_CONTAINS"), ("minContains", "MIN_CONTAINS")),
}


class _Diff:
    def __init__(self) -> None:
        self.found: list[Change] = []
        self._seen: set[tuple[int, int]] = set()

    def add(self, path: str, rule: str) -> None:
        self.found.append(Change(path, rule, rule in _COMPATIBLE))

    def ok(self) -> bool:
        return all(c.compatible for c in self.found)

    def trial(self, old: Node | None, new: Node | None, path: str) -> _Diff:
        sub = _Diff()
        sub._seen = self._seen
        sub.compare(old, new, path)
        return sub

    def compare(self, old: Node | None, new: Node | None, path: str) -> None:
        if old is None and new is None:
            return
        if old is None:
            self.add(path, "SCHEMA_ADDED")
            return
        if new is None:
            self.add(path, "SCHEMA_REMOVED")
            return
        old, new = _normal(old), _normal(new)
        if old.kind == new.kind and old.key == new.key and old.raw == new.raw:
            return
        pair = (id(old), id(new))
        if pair in self._seen:  # a recursive reference met again: compared above
            return
        self._seen.add(pair)
        try:
            self._compare(old, new, path)
        finally:
            self._seen.discard(pair)

    def _compare(self, old: Node, new: Node, path: str) -> None:
        if old.kind != "combined" and new.kind == "combined":
            sum_type = new.criterion != "allOf"
            results = [self.trial(old, sub, path) for sub in new.subs]
            fits = [r for r in results if r.ok()]
            if sum_type and fits:
                self.found.extend(fits[0].found)
                self.add(path, "SUM_TYPE_EXTENDED")
            elif not sum_type and len(fits) == len(results):
                for r in fits:
                    self.found.extend(r.found)
                self.add(path, "PRODUCT_TYPE_NARROWED")
            else:
                worst = next((r for r in results if not r.ok()), results[0])
                self.found.extend(worst.found)
                self.add(path, "COMBINED_TYPE_CHANGED")
            return
        if old.kind == "combined" and new.kind != "combined":
            results = [self.trial(sub, new, path) for sub in old.subs]
            fits = [r for r in results if r.ok()]
            if old.criterion == "allOf" and fits:
                self.found.extend(fits[0].found)
                self.add(path, "PRODUCT_TYPE_NARROWED")
            elif old.criterion != "allOf" and len(fits) == len(results):
                for r in fits:
                    self.found.extend(r.found)
                self.add(path, "SUM_TYPE_EXTENDED")
            else:
                worst = next((r for r in results if not r.ok()), results[0])
                self.found.extend(worst.found)
                self.add(path, "COMBINED_TYPE_CHANGED")
            return
        if old.kind != new.kind:
            self.add(path, "TYPE_EXTENDED" if new.kind == "empty" or old.kind == "false"
                     else "TYPE_CHANGED")
            return
        getattr(self, f"_{old.kind}", _nothing)(old, new, path)

    # -- scalars ------------------------------------------------------------------------------
    def _bounds(self, kind: str, old: Node, new: Node, path: str) -> None:
        for keyword, stem in _BOUNDS[kind]:
            before, after = old.keywords.get(keyword), new.keywords.get(keyword)
            if before == after:
                continue
            if after is None:
                self.add(f"{path}.{keyword}", f"{stem}_REMOVED")
            elif before is None:
                self.add(f"{path}.{keyword}", f"{stem}_ADDED")
            elif not _numbers(before, after):
                self.add(f"{path}.{keyword}", f"{stem}_CHANGED")
            else:
                word = "INCREASED" if after > before else "DECREASED"
                self.add(f"{path}.{keyword}", f"{stem}_{word}")

    def _string(self, old: Node, new: Node, path: str) -> None:
        self._bounds("string", old, new, path)
        for keyword, stem in (("pattern", "PATTERN"), ("format", "FORMAT")):
            before, after = old.keywords.get(keyword), new.keywords.get(keyword)
            if before != after:
                self.add(f"{path}.{keyword}", f"{stem}_REMOVED" if after is None else
                         f"{stem}_ADDED" if before is None else f"{stem}_CHANGED")

    def _number(self, old: Node, new: Node, path: str) -> None:
        before_int, after_int = bool(old.keywords.get("integer")), bool(new.keywords.get("integer"))
        if before_int != after_int:
            self.add(f"{path}.type", "TYPE_EXTENDED" if before_int else "TYPE_NARROWED")
        self._bounds("number", old, new, path)
        before, after = old.keywords.get("multipleOf"), new.keywords.get("multipleOf")
        if before != after:
            where = f"{path}.multipleOf"
            if after is None:
                self.add(where, "MULTIPLE_OF_REMOVED")
            elif before is None:
                self.add(where, "MULTIPLE_OF_ADDED")
            elif _numbers(before, after) and after and _divides(after, before):
                self.add(where, "MULTIPLE_OF_REDUCED")
            else:
                self.add(where, "MULTIPLE_OF_CHANGED")

    def _enum(self, old: Node, new: Node, path: str) -> None:
        before = [_key(v) for v in old.keywords["enum"]]
        after = {_key(v) for v in new.keywords["enum"]}
        if set(before) == after:
            return
        self.add(f"{path}.enum", "ENUM_ARRAY_EXTENDED" if set(before) <= after
                 else "ENUM_ARRAY_NARROWED" if after < set(before) else "ENUM_ARRAY_CHANGED")

    def _const(self, old: Node, new: Node, path: str) -> None:
        if _key(old.keywords["const"]) != _key(new.keywords["const"]):
            self.add(f"{path}.const", "CONST_CHANGED")

    def _not(self, old: Node, new: Node, path: str) -> None:
        # not A accepts at least what not B accepts when A accepts at most what B does
        sub = self.trial(new.subs[0], old.subs[0], f"{path}.not")
        if sub.ok():
            if sub.found:
                self.add(f"{path}.not", "NOT_TYPE_NARROWED")
        else:
            self.add(f"{path}.not", "NOT_TYPE_EXTENDED")

    # -- combinations -------------------------------------------------------------------------
    def _combined(self, old: Node, new: Node, path: str) -> None:
        if old.criterion != new.criterion:
            if new.criterion == "anyOf" or (old.criterion == "allOf"):
                self.add(path, "COMBINED_TYPE_EXTENDED")
            else:
                self.add(path, "COMBINED_TYPE_CHANGED")
                return
        before = list({s.key: s for s in old.subs}.values())
        after = list({s.key: s for s in new.subs}.values())
        product = new.criterion == "allOf"
        if len(before) < len(after):
            self.add(path, "PRODUCT_TYPE_EXTENDED" if product else "SUM_TYPE_EXTENDED")
        elif len(before) > len(after):
            self.add(path, "PRODUCT_TYPE_NARROWED" if product else "SUM_TYPE_NARROWED")
        edges: dict[int, list[int]] = {}
        found: dict[tuple[int, int], list[Change]] = {}
        for i, o in enumerate(before):
            for j, n in enumerate(after):
                sub = self.trial(o, n, f"{path}.{new.criterion}[{j}]")
                if sub.ok():
                    edges.setdefault(i, []).append(j)
                    found[i, j] = sub.found
        matching = _match(edges)
        if len(matching) < min(len(before), len(after)):
            self.add(path, "COMBINED_TYPE_SUBSCHEMAS_CHANGED")
        for i, j in matching.items():
            self.found.extend(found[i, j])

    # -- objects ------------------------------------------------------------------------------
    def _object(self, old: Node, new: Node, path: str) -> None:
        self._bounds("object", old, new, path)
        self._extra(old.additional, new.additional, f"{path}.additionalProperties",
                    "ADDITIONAL_PROPERTIES")
        self._dependencies(old, new, path)
        before_req, after_req = set(old.keywords["required"]), set(new.keywords["required"])
        for name in dict.fromkeys([*old.properties, *new.properties]):
            where = f"{path}.{name}"
            o, n = old.properties.get(name), new.properties.get(name)
            if n is None and o is not None:
                self._removed(o, new, name, where, "PROPERTY")
            elif o is None and n is not None:
                self._added(old, n, name, where, "PROPERTY",
                            required=name in after_req and not _has_default(n))
            elif o is not None and n is not None:
                self.compare(o, n, where)
                if name in after_req and name not in before_req:
                    self.add(where, "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED" if _has_default(n)
                             else "REQUIRED_ATTRIBUTE_ADDED")
                elif name in before_req and name not in after_req:
                    self.add(where, "REQUIRED_ATTRIBUTE_REMOVED")

    def _dependencies(self, old: Node, new: Node, path: str) -> None:
        before, after = old.keywords["dependent_required"], new.keywords["dependent_required"]
        for name in dict.fromkeys([*before, *after]):
            where = f"{path}.dependencies.{name}"
            b, a = before.get(name), after.get(name)
            if a is None:
                self.add(where, "DEPENDENCY_ARRAY_REMOVED")
            elif b is None:
                self.add(where, "DEPENDENCY_ARRAY_ADDED")
            elif set(a) != set(b):
                self.add(where, "DEPENDENCY_ARRAY_NARROWED" if set(a) < set(b)
                         else "DEPENDENCY_ARRAY_EXTENDED" if set(a) > set(b)
                         else "DEPENDENCY_ARRAY_CHANGED")
        for name in dict.fromkeys([*old.dependent_schemas, *new.dependent_schemas]):
            where = f"{path}.dependencies.{name}"
            o, n = old.dependent_schemas.get(name), new.dependent_schemas.get(name)
            if n is None:
                self.add(where, "DEPENDENCY_SCHEMA_REMOVED")
            elif o is None:
                self.add(where, "DEPENDENCY_SCHEMA_ADDED")
            else:
                self.compare(o, n, where)

    # -- arrays -------------------------------------------------------------------------------
    def _array(self, old: Node, new: Node, path: str) -> None:
        self._bounds("array", old, new, path)
        unique_before = old.keywords.get("uniqueItems") is True
        unique_after = new.keywords.get("uniqueItems") is True
        if unique_before != unique_after:
            self.add(f"{path}.uniqueItems",
                     "UNIQUE_ITEMS_ADDED" if unique_after else "UNIQUE_ITEMS_REMOVED")
        if old.contains is not None or new.contains is not None:
            if new.contains is None:
                self.add(f"{path}.contains", "CONTAINS_REMOVED")
            elif old.contains is None:
                self.add(f"{path}.contains", "CONTAINS_ADDED")
            else:
                self.compare(old.contains, new.contains, f"{path}.contains")
        self._extra(old.additional, new.additional, f"{path}.items", "ADDITIONAL_ITEMS")
        for i in range(max(len(old.prefix), len(new.prefix))):
            where = f"{path}[{i}]"
            o = old.prefix[i] if i < len(old.prefix) else None
            n = new.prefix[i] if i < len(new.prefix) else None
            if n is None and o is not None:
                self._removed(o, new, None, where, "ITEM")
            elif o is None and n is not None:
                self._added(old, n, None, where, "ITEM", required=False)
            else:
                self.compare(o, n, where)

    # -- open, partially open and closed content models ---------------------------------------
    def _extra(self, old: Node | bool | None, new: Node | bool | None, path: str,
               stem: str) -> None:
        before, after = _openness(old), _openness(new)
        if before == "open" and after == "open":
            return
        if after == "open":
            self.add(path, f"{stem}_ADDED" if before == "closed" else f"{stem}_EXTENDED")
        elif after == "closed":
            if before != "closed":
                self.add(path, f"{stem}_REMOVED")
        elif before == "closed":
            self.add(path, f"{stem}_EXTENDED")
        elif before == "open":
            self.add(path, f"{stem}_NARROWED")
        else:
            assert isinstance(old, Node) and isinstance(new, Node)
            self.compare(old, new, path)

    def _covering(self, node: Node, name: str | None) -> Node | bool:
        """What ``node`` says of a member it does not list: True (open), False, or a schema."""
        if name is not None:
            for pattern, schema in node.pattern_properties.items():
                if _search(pattern, name):
                    return schema
        extra = node.additional
        return True if extra is None else extra

    def _removed(self, old_member: Node, new: Node, name: str | None, where: str,
                 stem: str) -> None:
        cover = self._covering(new, name)
        if cover is True:
            self.add(where, f"{stem}_REMOVED_FROM_OPEN_CONTENT_MODEL")
        elif cover is False:
            self.add(where, f"{stem}_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL"
                     if old_member.kind == "false" else
                     f"{stem}_REMOVED_FROM_CLOSED_CONTENT_MODEL")
        else:
            sub = self.trial(old_member, cover, where)
            self.add(where, f"{stem}_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                     if sub.ok() else f"{stem}_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL")

    def _added(self, old: Node, new_member: Node, name: str | None, where: str, stem: str,
               *, required: bool) -> None:
        cover = self._covering(old, name)
        if cover is True:
            self.add(where, f"{stem}_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                     if new_member.kind == "empty" and not required else
                     f"{stem}_ADDED_TO_OPEN_CONTENT_MODEL")
        elif cover is False:
            if stem == "ITEM":
                self.add(where, "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL")
            else:
                self.add(where, "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" if required
                         else "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL")
        else:
            sub = self.trial(cover, new_member, where)
            if not sub.ok():
                self.add(where, f"{stem}_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL")
            elif required:
                self.add(where, "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL")
            else:
                self.add(where, f"{stem}_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL")


def _nothing(old: Node, new: Node, path: str) -> None:
    """Kinds with no keywords of their own (empty, false, boolean, null)."""


def _normal(node: Node) -> Node:
    node = node.resolved()
    while node.kind == "combined" and len({s.key for s in node.subs}) == 1:
        node = node.subs[0].resolved()
    return node


def _openness(extra: Node | bool | None) -> str:
    if extra is None or extra is True:
        return "open"
    if extra is False:
        return "closed"
    if extra.kind == "empty":
        return "open"
    if extra.kind == "false":
        return "closed"
    return "partial"


def _has_default(node: Node) -> bool:
    return isinstance(node.raw, dict) and "default" in node.raw


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _divides(small: float, large: float) -> bool:
    ratio = large / small
    return abs(ratio - round(ratio)) < 1e-9


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _match(edges: dict[int, list[int]]) -> dict[int, int]:
    """A maximum bipartite matching (augmenting paths): left index -> right index."""
    owner: dict[int, int] = {}

    def augment(left: int, seen: set[int]) -> bool:
        for right in edges.get(left, ()):
            if right in seen:
                continue
            seen.add(right)
            if right not in owner or augment(owner[right], seen):
                owner[right] = left
                return True
        return False

    for left in edges:
        augment(left, set())
    return {left: right for right, left in owner.items()}


def changes(previous: Any, new: Any) -> list[Change]:
    """Every difference from ``previous`` to ``new`` as a BACKWARD check sees it."""
    diff = _Diff()
    diff.compare(read_schema(previous), read_schema(new), "$")
    return diff.found


def breaking_changes(previous: Any, new: Any, mode: str) -> list[Change]:
    """The changes that make ``new`` incompatible with ``previous`` under ``mode``."""
    mode = _mode(mode)
    if mode == "NONE":
        return []
    out: list[Change] = []
    if mode.startswith(("BACKWARD", "FULL")):
        out += [c for c in changes(previous, new) if not c.compatible]
    if mode.startswith(("FORWARD", "FULL")):
        out += [Change(c.path, f"{c.rule} (read by the previous schema)", False)
                for c in changes(new, previous) if not c.compatible]
    return out


def is_compatible(previous: Any, new: Any, mode: str = "BACKWARD") -> bool:
    """Whether ``new`` may follow ``previous`` under ``mode`` (``BACKWARD``, ``FORWARD``,
    ``FULL``, their ``_TRANSITIVE`` forms, which mean the same for one pair, or ``NONE``).

    Raises ValueError when a document is not a JSON Schema or ``mode`` is unknown."""
    return not breaking_changes(previous, new, mode)


def _mode(mode: str) -> str:
    if not isinstance(mode, str) or mode.upper() not in MODES:
        raise ValueError(f"compatibility mode {mode!r} is not one of {', '.join(MODES)}")
    return mode.upper()
