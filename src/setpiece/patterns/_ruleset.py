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

from collections.abc import Callable
from typing import Any

from setpiece.patterns._cidr import parse_ip
from setpiece.patterns._event import Field, Flat, Need, flatten, search
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


class _End:
    """A sub-rule that ends at a node: its rule name, and what array consistency needs."""

    __slots__ = ("absent_paths", "fields", "name", "paths")

    def __init__(self, name: str, fields: tuple[Field, ...]) -> None:
        self.name = name
        self.fields = fields
        self.paths = frozenset(field[0] for field in fields)
        self.absent_paths = frozenset(field[0] for field in fields if field[2])

    def holds(self, flat: Flat) -> bool:
        """Whether the sub-rule, already matched field by field, survives array consistency.

        Only fields with leaves inside arrays of objects can conflict; with fewer than two of
        them (and no absence tested on one) the field-by-field answer is exact.
        """
        deep = flat.deep
        if len(self.paths & deep) < 2 and self.absent_paths.isdisjoint(deep):
            return True
        return search(self.fields, flat)


class _Node:
    __slots__ = ("children", "ends", "groups")

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.children: dict[Condition, _Node] = {}
        self.ends: list[_End] = []


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
        "probe",
        "scan",
        "simple",
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
        self.simple = True  # only exact values: one event value reaches each child once
        self.probe: Callable[[object, set[_Node]], None] | None = None

    def add(self, matcher: Matcher, node: _Node) -> None:
        self.probe = None
        kind = type(matcher)
        if kind is Exact:
            self.exact.setdefault(matcher.key, []).append(node)  # type: ignore[union-attr]
            return
        self.simple = False
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

    def compile(self) -> Callable[[object, set[_Node]], None]:
        """The probe of this group: adds to a set every child a value leads to. It is made of
        only the steps this group needs."""
        text_steps: list[Callable[[str, set[_Node]], None]] = []
        other_steps: list[Callable[[Any, set[_Node]], None]] = []
        exact_get = self.exact.get
        if self.prefix is not None:
            text_steps.append(_slices(self.prefix.sorted, head=True, fold=False))
        if self.suffix is not None:
            text_steps.append(_slices(self.suffix.sorted, head=False, fold=False))
        if self.folded:
            folded_get = self.folded.get

            def folded(value: str, out: set[_Node]) -> None:
                if value.isascii():
                    nodes = folded_get(value.lower())
                    if nodes:
                        out.update(nodes)

            text_steps.append(folded)
        if self.folded_prefix is not None:
            text_steps.append(_slices(self.folded_prefix.sorted, head=True, fold=True))
        if self.folded_suffix is not None:
            text_steps.append(_slices(self.folded_suffix.sorted, head=False, fold=True))
        if self.addresses:
            addresses = tuple(
                (address.bits, address.low, address.high, node) for address, node in self.addresses
            )

            def in_block(value: str, out: set[_Node]) -> None:
                ip = parse_ip(value)
                if ip is not None:
                    bits, number = ip
                    for family, low, high, node in addresses:
                        if family == bits and low <= number <= high:
                            out.add(node)

            text_steps.append(in_block)
        if self.numeric:
            ranges = tuple((numeric.contains, node) for numeric, node in self.numeric)

            def in_range(key: Any, out: set[_Node]) -> None:
                kind = type(key)
                if kind is float or kind is int:
                    for contains, node in ranges:
                        if contains(key):
                            out.add(node)

            other_steps.append(in_range)
        both: list[Callable[[Any, Any, set[_Node]], None]] = []
        if self.anything_but:
            excluded = tuple(self.anything_but)

            def anything_but(value: object, key: Any, out: set[_Node]) -> None:
                for keys, node in excluded:
                    if key not in keys:
                        out.add(node)

            both.append(anything_but)
        if self.exists:
            exists = tuple(self.exists)
            both.append(lambda value, key, out: out.update(exists))
        if self.scan:
            scan = tuple((matcher.test, node) for matcher, node in self.scan)

            def scanned(value: object, key: Any, out: set[_Node]) -> None:
                for test, node in scan:
                    if test(value):
                        out.add(node)

            both.append(scanned)
        text, other, common = tuple(text_steps), tuple(other_steps), tuple(both)

        def probe(value: object, out: set[_Node]) -> None:
            if type(value) is str:
                key: Any = value
                nodes = exact_get(value)
                if nodes:
                    out.update(nodes)
                for step in text:
                    step(value, out)
            else:
                key = event_key(value)
                nodes = exact_get(key)
                if nodes:
                    out.update(nodes)
                for other_step in other:
                    other_step(key, out)
            for common_step in common:
                common_step(value, key, out)

        self.probe = probe
        return probe


def _slices(
    tables: list[tuple[int, dict[str, list[_Node]]]], *, head: bool, fold: bool
) -> Callable[[str, set[_Node]], None]:
    """A step that looks up the value's head (or tail) of every length in ``tables``."""
    ordered = tuple(tables)

    def step(value: str, out: set[_Node]) -> None:
        size = len(value)
        for length, table in ordered:
            if length > size:
                return
            part = value[:length] if head else value[size - length :]
            if fold:
                if not part.isascii():
                    continue
                part = part.lower()
            nodes = table.get(part)
            if nodes:
                out.update(nodes)

    return step


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

    __slots__ = ("_dirty", "_need", "_paths", "_root", "_rules")

    def __init__(self) -> None:
        self._rules: dict[str, Pattern] = {}
        self._root = _Node()
        self._need = Need()
        self._paths: dict[str, int] = {}  # how many sub-rules test each path
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
        self._need = Need()
        self._dirty = False
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
                    child = node.children[condition] = _Node()
                    group = node.groups.get(condition.path)
                    if group is None:
                        group = node.groups[condition.path] = _Group()
                    for matcher in condition.matchers:
                        group.add(matcher, child)
                    if condition.absent_ok:
                        group.absent.append(child)
                node = child
            node.ends.append(_End(name, fields))

    def match(self, event: Any) -> set[str]:
        """The names of the rules ``event`` (a dict, or JSON text) matches."""
        if self._dirty:
            self._rebuild()
        flat = flatten(event, self._need)
        values = flat.values
        deep = flat.deep
        matched: set[str] = set()
        stack = [self._root]
        pop, push = stack.pop, stack.extend
        get = values.get
        while stack:
            node = pop()
            if node.ends:
                for end in node.ends:
                    if end.name not in matched and (not deep or end.holds(flat)):
                        matched.add(end.name)
            for path, group in node.groups.items():
                found = get(path)
                if found is None:
                    if group.absent:
                        push(group.absent)
                    continue
                if group.simple and len(found) == 1:
                    value = found[0]
                    nodes = group.exact.get(value if type(value) is str else event_key(value))
                    if nodes:
                        push(nodes)
                else:
                    probe = group.probe or group.compile()
                    reached: set[_Node] = set()
                    for value in found:
                        probe(value, reached)
                    push(reached)
                if group.absent and path in deep:
                    # Absence under array consistency is relative to the other fields' array
                    # elements: let it through here, End.holds decides.
                    push(group.absent)
        return matched
