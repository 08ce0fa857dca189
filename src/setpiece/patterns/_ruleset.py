"""``RuleSet``: many named patterns matched at once through a shared index.

Every sub-rule is a path through a trie. Its conditions are ordered exact-match first, so rules
that share ``source`` and ``detail-type`` values share the trie nodes for them, and a node keeps,
per field path, hash tables and sorted buckets from a value to the child nodes it leads to
(exact values, prefixes and suffixes by length, case-folded text, numeric ranges, ...).
Matching flattens the event once, then walks only the nodes whose conditions hold: the work
depends on what the event matches, not on how many rules there are. Rare operators (wildcard,
anything-but with prefix/suffix/wildcard, non-ASCII equals-ignore-case) are tested one by one,
but only at the nodes an event reaches.

Array consistency: the walk treats each field on its own; when the event has arrays of objects
(the only case where that can accept too much), each rule reached is confirmed by the exact
search over its fields.
"""

from __future__ import annotations

from typing import Any

from setpiece.patterns._cidr import parse_ip
from setpiece.patterns._event import Field, flatten, need_map, search
from setpiece.patterns._match import Pattern, compile
from setpiece.patterns._matchers import (
    Address,
    AnythingBut,
    Exact,
    Exists,
    IgnoreCase,
    Matcher,
    Numeric,
    Prefix,
    Suffix,
)
from setpiece.patterns._numbers import event_key
from setpiece.patterns._parse import Condition

__all__ = ["RuleSet"]


class _Node:
    __slots__ = ("children", "ends", "groups")

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.children: dict[Condition, _Node] = {}
        self.ends: list[tuple[str, tuple[Field, ...]]] = []


class _Lengths:
    """Strings of several lengths, looked up by slicing the value once per length."""

    __slots__ = ("by_length", "sorted")

    def __init__(self) -> None:
        self.by_length: dict[int, dict[str, list[_Node]]] = {}
        self.sorted: list[tuple[int, dict[str, list[_Node]]]] = []

    def add(self, text: str, node: _Node) -> None:
        table = self.by_length.get(len(text))
        if table is None:
            table = self.by_length[len(text)] = {}
            self.sorted = sorted(self.by_length.items())
        table.setdefault(text, []).append(node)


class _Group:
    """The transitions of one node on one field path."""

    __slots__ = (
        "absent",
        "addresses",
        "anything_but",
        "exact",
        "exists",
        "folded",
        "folded_prefix",
        "folded_suffix",
        "numeric",
        "prefix",
        "scan",
        "strings_only_exact",
        "suffix",
    )

    def __init__(self) -> None:
        self.exact: dict[Any, list[_Node]] = {}
        self.prefix: _Lengths | None = None
        self.suffix: _Lengths | None = None
        self.folded: dict[str, list[_Node]] = {}
        self.folded_prefix: _Lengths | None = None
        self.folded_suffix: _Lengths | None = None
        self.addresses: list[tuple[Address, _Node]] = []
        self.numeric: list[tuple[Numeric, _Node]] = []
        self.anything_but: list[tuple[frozenset[Any], _Node]] = []
        self.exists: list[_Node] = []
        self.absent: list[_Node] = []
        self.scan: list[tuple[Matcher, _Node]] = []
        self.strings_only_exact = True

    def add(self, matcher: Matcher, node: _Node) -> None:
        kind = type(matcher)
        if kind is Exact:
            self.exact.setdefault(matcher.key, []).append(node)  # type: ignore[union-attr]
            return
        self.strings_only_exact = False
        if kind is Prefix:
            self.prefix = self.prefix or _Lengths()
            self.prefix.add(matcher.text, node)  # type: ignore[union-attr]
        elif kind is Suffix:
            self.suffix = self.suffix or _Lengths()
            self.suffix.add(matcher.text, node)  # type: ignore[union-attr]
        elif kind is IgnoreCase and matcher.text.isascii():  # type: ignore[union-attr]
            assert isinstance(matcher, IgnoreCase)
            folded = matcher.text.lower()
            if matcher.mode == "equals":
                self.folded.setdefault(folded, []).append(node)
            elif matcher.mode == "prefix":
                self.folded_prefix = self.folded_prefix or _Lengths()
                self.folded_prefix.add(folded, node)
            else:
                self.folded_suffix = self.folded_suffix or _Lengths()
                self.folded_suffix.add(folded, node)
        elif kind is Address:
            self.addresses.append((matcher, node))  # type: ignore[arg-type]
        elif kind is Numeric:
            self.numeric.append((matcher, node))  # type: ignore[arg-type]
        elif kind is AnythingBut:
            self.anything_but.append((matcher.keys, node))  # type: ignore[union-attr]
        elif kind is Exists:
            self.exists.append(node)
        else:
            self.scan.append((matcher, node))

    def collect(self, value: object, out: set[_Node]) -> None:
        """Add to ``out`` every child that ``value`` leads to."""
        if type(value) is str:
            assert isinstance(value, str)
            key: Any = value
            nodes = self.exact.get(value)
            if nodes:
                out.update(nodes)
            if self.strings_only_exact:
                return
            size = len(value)
            if self.prefix is not None:
                for length, table in self.prefix.sorted:
                    if length > size:
                        break
                    nodes = table.get(value[:length])
                    if nodes:
                        out.update(nodes)
            if self.suffix is not None:
                for length, table in self.suffix.sorted:
                    if length > size:
                        break
                    nodes = table.get(value[size - length :])
                    if nodes:
                        out.update(nodes)
            if self.folded and value.isascii():
                nodes = self.folded.get(value.lower())
                if nodes:
                    out.update(nodes)
            if self.folded_prefix is not None:
                for length, table in self.folded_prefix.sorted:
                    if length > size:
                        break
                    head = value[:length]
                    if head.isascii():
                        nodes = table.get(head.lower())
                        if nodes:
                            out.update(nodes)
            if self.folded_suffix is not None:
                for length, table in self.folded_suffix.sorted:
                    if length > size:
                        break
                    tail = value[size - length :]
                    if tail.isascii():
                        nodes = table.get(tail.lower())
                        if nodes:
                            out.update(nodes)
            if self.addresses:
                ip = parse_ip(value)
                if ip is not None:
                    bits, number = ip
                    for address, node in self.addresses:
                        if address.bits == bits and address.low <= number <= address.high:
                            out.add(node)
        else:
            key = event_key(value)
            nodes = self.exact.get(key)
            if nodes:
                out.update(nodes)
            if self.strings_only_exact:
                return
            if self.numeric and (type(key) is float or type(key) is int):
                for numeric, node in self.numeric:
                    if numeric.contains(key):
                        out.add(node)
        for excluded, node in self.anything_but:
            if key not in excluded:
                out.add(node)
        if self.exists:
            out.update(self.exists)
        for matcher, node in self.scan:
            if matcher.test(value):
                out.add(node)


_INDEXED = (Exact, Prefix, Suffix, Numeric, Exists, Address, AnythingBut)


def _rank(condition: Condition) -> tuple[int, str]:
    """Insertion order of a sub-rule's conditions: the cheapest and most shared first."""
    matchers = condition.matchers
    if condition.absent_ok or not matchers:
        return 3, condition.path
    if all(type(m) is Exact for m in matchers):
        return 0, condition.path
    if all(
        isinstance(m, _INDEXED) or (isinstance(m, IgnoreCase) and m.text.isascii())
        for m in matchers
    ):
        return 1, condition.path
    return 2, condition.path


class RuleSet:
    """Named patterns, matched together: ``match(event)`` returns the names that match."""

    __slots__ = ("_dirty", "_need", "_root", "_rules")

    def __init__(self) -> None:
        self._rules: dict[str, Pattern] = {}
        self._root = _Node()
        self._need: dict[str, int] = {}
        self._dirty = False

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def __iter__(self) -> Any:
        return iter(self._rules)

    def get(self, name: str) -> Pattern | None:
        return self._rules.get(name)

    def add(self, name: str, pattern: object) -> Pattern:
        """Add (or replace) the rule ``name``; ``pattern`` is a dict, JSON text or a Pattern.

        Raises PatternError if the pattern is invalid; the rule set is then unchanged.
        """
        compiled = compile(pattern)
        if name in self._rules:
            self._dirty = True
        self._rules[name] = compiled
        if not self._dirty:
            self._insert(name, compiled)
        return compiled

    def remove(self, name: str) -> None:
        """Remove the rule ``name``; KeyError if there is none."""
        del self._rules[name]
        self._dirty = True

    def _rebuild(self) -> None:
        self._root = _Node()
        self._need = {}
        self._dirty = False
        for name, pattern in self._rules.items():
            self._insert(name, pattern)

    def _insert(self, name: str, pattern: Pattern) -> None:
        for sub, fields in zip(pattern.subrules, pattern.fields, strict=True):
            need_map((c.path for c in sub), self._need)
            node = self._root
            for condition in sorted(sub, key=_rank):
                child = node.children.get(condition)
                if child is None:
                    child = node.children[condition] = _Node()
                    group = node.groups.get(condition.path)
                    if group is None:
                        group = node.groups[condition.path] = _Group()
                    for matcher in condition.matchers:
                        group.add(matcher, child)
                    if condition.absent_ok:
                        group.absent.append(child)
                node = child
            node.ends.append((name, fields))

    def match(self, event: Any) -> set[str]:
        """The names of the rules ``event`` (a dict, or JSON text) matches."""
        if self._dirty:
            self._rebuild()
        flat = flatten(event, self._need)
        values = flat.values
        nested = flat.nested
        matched: set[str] = set()
        stack = [self._root]
        while stack:
            node = stack.pop()
            for name, fields in node.ends:
                if name not in matched and (not nested or search(fields, flat)):
                    matched.add(name)
            for path, group in node.groups.items():
                found = values.get(path)
                if found is None:
                    stack.extend(group.absent)
                    continue
                reached: set[_Node] = set()
                for value in found:
                    group.collect(value, reached)
                if nested and group.absent:
                    reached.update(group.absent)
                stack.extend(reached)
        return matched
