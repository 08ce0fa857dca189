"""``RuleSet``: many named patterns matched at once through a shared index.

Every sub-rule is a path through a trie. Its conditions are ordered exact-match first, so rules
that share ``source`` and ``detail-type`` values share the trie nodes for them, and a node keeps,
per field path, hash tables and sorted buckets from a value to the child nodes it leads to
(exact values, prefixes and suffixes by length, case-folded text, numeric ranges, ...).
Matching flattens the event once, then walks only the nodes whose conditions hold: the work
depends on what the event matches, not on how many rules there are. Rare operators (wildcard,
anything-but with prefix/suffix/wildcard, non-ASCII equals-ignore-case) are tested one by one,
but only at the nodes an event reaches. Each node, once events reach it, is visited by one
function made for its groups (``_visitor`` in :mod:`~setpiece.patterns._trie`), and a group with
text operators other than exact values remembers what each string leads to
(:func:`~setpiece.patterns._probes.remembered`).

This module builds the trie and walks it; the nodes, their groups and the generated visits are
in :mod:`~setpiece.patterns._trie`, the per-operator lookups in
:mod:`~setpiece.patterns._probes`.

Array consistency: the walk treats each field on its own; when the event has arrays of objects
(the only case where that can accept too much), a rule reached with two or more fields inside
them (or absence tested there) is confirmed by the exact search over those fields.
"""

from __future__ import annotations

from typing import Any

from setpiece.patterns._event import Need, flatten
from setpiece.patterns._match import Pattern, compile
from setpiece.patterns._matchers import (
    Address,
    AnythingBut,
    Exact,
    Exists,
    IgnoreCase,
    Numeric,
    Prefix,
    Suffix,
)
from setpiece.patterns._parse import Condition
from setpiece.patterns._trie import End, Group, Node

__all__ = ["RuleSet"]


_INDEXED = (Exact, Prefix, Suffix, Numeric, Exists, Address, AnythingBut)


def _cost(condition: Condition) -> int:
    """0 for exact values, 1 for other indexed operators, 2 for those tested one by one,
    3 when absence is allowed."""
    matchers = condition.matchers
    if condition.absent_ok or not matchers:
        return 3
    if all(type(m) is Exact for m in matchers):
        return 0
    if all(
        isinstance(m, _INDEXED) or (isinstance(m, IgnoreCase) and m.text.isascii())
        for m in matchers
    ):
        return 1
    return 2


def _order(condition: Condition, counts: dict[str, int]) -> tuple[int, int, str]:
    """Paths most rules test come first (so rules share trie nodes), then cheap operators."""
    return -counts[condition.path], _cost(condition), condition.path


class RuleSet:
    """Named patterns, matched together: ``match(event)`` returns the names that match."""

    __slots__ = ("_dirty", "_inserted", "_need", "_paths", "_root", "_rules")

    def __init__(self) -> None:
        self._rules: dict[str, Pattern] = {}
        self._root = Node()
        self._need = Need()
        self._paths: dict[str, int] = {}  # how many sub-rules test each path
        self._dirty = False
        self._inserted = 0  # rules added to the trie since it was last built

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
            self._inserted += 1
            if self._inserted > 16 and self._inserted * 2 > len(self._rules):
                # Half the rules came after the last build: the order of the fields (most
                # tested first) is worth computing again, once, at the next match.
                self._dirty = True
            else:
                self._insert(name, compiled)
        return compiled

    def remove(self, name: str) -> None:
        """Remove the rule ``name``; KeyError if there is none."""
        del self._rules[name]
        self._dirty = True

    def _rebuild(self) -> None:
        self._root = Node()
        self._need = Need()
        self._dirty = False
        self._inserted = 0
        paths: dict[str, int] = {}
        for pattern in self._rules.values():
            for sub in pattern.subrules:
                for condition in sub:
                    paths[condition.path] = paths.get(condition.path, 0) + 1
        self._paths = paths
        for name, pattern in self._rules.items():
            self._insert(name, pattern, count=False)

    def _insert(self, name: str, pattern: Pattern, *, count: bool = True) -> None:
        for sub, fields in zip(pattern.subrules, pattern.fields, strict=True):
            self._need.add(c.path for c in sub)
            counts = self._paths
            if count:
                for condition in sub:
                    counts[condition.path] = counts.get(condition.path, 0) + 1

            node = self._root
            for condition in sorted(sub, key=lambda c: _order(c, counts)):
                child = node.children.get(condition)
                if child is None:
                    child = node.children[condition] = Node()
                    group = node.groups.get(condition.path)
                    if group is None:
                        group = node.groups[condition.path] = Group()
                    group.add_condition(condition, child)
                    node.refresh()
                node = child
            node.ends = (*node.ends, End(name, fields))

    def match(self, event: Any) -> set[str]:
        """The names of the rules ``event`` (a dict, or JSON text) matches."""
        if self._dirty:
            self._rebuild()
        flat = flatten(event, self._need)
        deep = flat.deep
        matched: set[str] = set()
        stack = [self._root]
        pop = stack.pop
        get = flat.values.get
        while stack:
            node = pop()
            if node.ends:
                for end in node.ends:
                    if end.name not in matched and (
                        not deep or end.plain or deep.isdisjoint(end.paths) or end.holds(flat)
                    ):
                        matched.add(end.name)
            visit = node.visit
            if visit is None:
                visit = node.freeze()
            visit(get, stack, deep)
        return matched
