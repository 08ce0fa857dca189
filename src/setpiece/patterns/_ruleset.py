"""``RuleSet``: many named patterns matched at once through a shared index.

Every sub-rule is a path through a trie. Its conditions are ordered exact-match first, so rules
that share ``source`` and ``detail-type`` values share the trie nodes for them, and a node keeps,
per field path, hash tables and sorted buckets from a value to the child nodes it leads to
(exact values, prefixes and suffixes by length, case-folded text, numeric ranges, ...).
Matching flattens the event once, then walks only the nodes whose conditions hold: the work
depends on what the event matches, not on how many rules there are. Rare operators (wildcard,
anything-but with prefix/suffix/wildcard, non-ASCII equals-ignore-case) are tested one by one,
but only at the nodes an event reaches. Each node, once events reach it, is visited by one
function made for its groups (``_visitor``), and a group with text operators other than exact
values remembers what each string leads to (``_remembered``).

Array consistency: the walk treats each field on its own; when the event has arrays of objects
(the only case where that can accept too much), a rule reached with two or more fields inside
them (or absence tested there) is confirmed by the exact search over those fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setpiece.patterns._cidr import parse_ip
from setpiece.patterns._codegen import factory
from setpiece.patterns._event import Field, Flat, Need, consistent, flatten
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

    __slots__ = ("fields", "name", "paths", "plain")

    def __init__(self, name: str, fields: tuple[Field, ...]) -> None:
        self.name = name
        self.fields = fields
        self.paths = frozenset(field[0] for field in fields)
        # One field and no absence: array consistency can never reject it.
        self.plain = len(fields) < 2 and not any(field[2] for field in fields)

    def holds(self, flat: Flat) -> bool:
        """Whether the sub-rule, already matched field by field, survives array consistency."""
        return consistent(self.fields, flat)


class _Node:
    __slots__ = ("children", "ends", "groups", "visit")

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.visit: Visit | None = _leave  # what match does at this node; None: stale
        self.children: dict[Condition, _Node] = {}
        self.ends: tuple[_End, ...] = ()

    def refresh(self) -> None:
        """The groups changed: ``visit`` is made again when an event next reaches the node."""
        self.visit = None

    def freeze(self) -> Visit:
        self.visit = visit = _visitor(self.groups)
        return visit


Visit = Callable[[Callable[[str], "list[Any] | None"], "list[_Node]", set[str]], None]
"""What ``RuleSet.match`` does at a node: given the lookup of an event's values by path, the
stack of nodes to visit and the paths with leaves inside arrays of objects (``Flat.deep``),
push the children the event's values lead to."""


def _leave(get: Callable[[str], list[Any] | None], stack: list[_Node], deep: set[str]) -> None:
    """The visit of a node without groups: nothing below it."""


_VISITORS: dict[str, Callable[..., Visit]] = {}
_MAX_VISITORS = 1024


def _visitor(groups: dict[str, _Group]) -> Visit:
    """The visit of a node with these groups, as one function: per group, the event's values at
    its path are looked up once; one value of an exact-only group is looked up inline, other
    groups run their probe. The code depends only on the node's shape (per group: exact-only,
    absence allowed, a child reachable twice), so nodes of one shape share it; the paths,
    tables and probes are arguments of its factory."""
    if not groups:
        return _leave
    consts: list[object] = []
    code: list[str] = []

    def const(value: object) -> str:
        consts.append(value)
        return f"c{len(consts) - 1}"

    for path, group in groups.items():
        p = const(path)
        absent = const(tuple(group.absent)) if group.absent else None
        probe = const(group.probe or group.compile())
        single = const(group.single)
        code.append(f"        found = get({p})")
        code.append("        if found is None:")
        code.append(f"            stack.extend({absent})" if absent else "            pass")
        code.append("        else:")
        if not group.multi:
            # One value reaches each child at most once: straight onto the stack.
            code.append("            if len(found) == 1:")
            if group.exact_only:
                lookup = const(group.exact.get)
                code.append("                value = found[0]")
                code.append(
                    f"                nodes = {lookup}(value if type(value) is str "
                    "else event_key(value))"
                )
                code.append("                if nodes:")
                code.append("                    stack.extend(nodes)")
            else:
                code.append(f"                {single}(found, stack)")
            code.append("            else:")
            indent = "                "
        else:
            indent = "            "
        code.append(f"{indent}reached = []")
        code.append(f"{indent}{probe}(found, reached)")
        code.append(f"{indent}if reached:")
        code.append(f"{indent}    stack.extend(set(reached))")
        if absent:
            # Absence under array consistency is relative to the other fields' array
            # elements: let it through here, End.holds decides.
            code.append(f"            if {p} in deep:")
            code.append(f"                stack.extend({absent})")
    names = ", ".join(f"c{i}" for i in range(len(consts)))
    source = (
        f"def factory(event_key, {names}):\n"
        "    def visit(get, stack, deep):\n" + "\n".join(code) + "\n    return visit\n"
    )
    visit: Visit = factory(source, _VISITORS, _MAX_VISITORS)(event_key, *consts)
    return visit


Probe = Callable[[list[Any], list[_Node]], None]
"""Appends to a list the children the values of one path (a list) lead to, maybe repeated."""


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
    """The transitions of one node on one field path.

    ``exact_only``: only exact values, so one event value reaches one list of children, found
    inline by ``RuleSet.match``. ``multi``: a child is reached through several operators, so
    even one value can reach it twice.
    """

    __slots__ = (
        "absent",
        "addresses",
        "anything_but",
        "exact",
        "exact_only",
        "exists",
        "folded",
        "folded_prefix",
        "folded_suffix",
        "multi",
        "numeric",
        "prefix",
        "probe",
        "scan",
        "single",
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
        self.exact_only = True
        self.multi = False
        self.probe: Probe | None = None
        self.single: Probe = _nowhere  # the probe for one value; made with ``probe``

    def add_condition(self, condition: Condition, node: _Node) -> None:
        matchers = condition.matchers
        for matcher in matchers:
            self.add(matcher, node)
        if len(matchers) > 1 and not all(type(m) is Exact for m in matchers):
            self.multi = True
        if condition.absent_ok:
            self.absent.append(node)

    def add(self, matcher: Matcher, node: _Node) -> None:
        self.probe = None
        kind = type(matcher)
        if kind is Exact:
            self.exact.setdefault(matcher.key, []).append(node)  # type: ignore[union-attr]
            return
        self.exact_only = False
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

    def compile(self) -> Probe:
        """The probe of this group, made of only the steps it needs; each step takes all the
        values of the path at once."""
        steps: list[Probe] = []
        if self.exact:
            steps.append(_exact_step(self.exact))
        if self.prefix is not None:
            steps.append(_slices(self.prefix.sorted, head=True, fold=False))
        if self.suffix is not None:
            steps.append(_slices(self.suffix.sorted, head=False, fold=False))
        if self.folded:
            steps.append(_folded_step(self.folded))
        if self.folded_prefix is not None:
            steps.append(_slices(self.folded_prefix.sorted, head=True, fold=True))
        if self.folded_suffix is not None:
            steps.append(_slices(self.folded_suffix.sorted, head=False, fold=True))
        if self.addresses:
            steps.append(_address_step(self.addresses))
        if self.numeric:
            steps.append(_numeric_step(self.numeric))
        if self.anything_but:
            steps.append(_anything_but_step(self.anything_but))
        if self.exists:
            exists = tuple(self.exists)

            def exists_step(found: list[Any], out: list[_Node]) -> None:
                out.extend(exists)

            steps.append(exists_step)
        if self.scan:
            steps.append(_scan_step(self.scan))
        probe: Probe
        if len(steps) == 1:
            probe = steps[0]
        else:
            ordered = tuple(steps)

            def probe(found: list[Any], out: list[_Node]) -> None:
                for step in ordered:
                    step(found, out)

        self.probe = probe
        if self.exact_only or not (
            self.prefix or self.suffix or self.folded or self.folded_prefix
            or self.folded_suffix or self.addresses or self.anything_but or self.scan
        ):  # fmt: skip
            self.single = probe
        else:
            self.single = _remembered(probe)
        return probe


def _nowhere(found: list[Any], out: list[_Node]) -> None:
    """The probe of a group before it is compiled (never called)."""
    raise AssertionError("probe of a group not compiled")


_REMEMBERED = 256
"""Values whose children a group remembers before it judges whether remembering pays."""


def _remembered(probe: Probe) -> Probe:
    """``probe`` for one value, remembering the children each string leads to: text operators
    other than exact values (prefixes, wildcards, ...) cost far more than a lookup, and fields
    like ``source`` or a city repeat. When the table fills up with fewer hits than entries,
    the values hardly repeat (ids, amounts): the group stops remembering."""
    memo: dict[str, tuple[_Node, ...]] | None = {}
    hits = 0

    def single(found: list[Any], out: list[_Node]) -> None:
        nonlocal memo, hits
        value = found[0]
        table = memo
        if table is None or type(value) is not str:
            probe(found, out)
            return
        nodes = table.get(value)
        if nodes is not None:
            hits += 1
            out.extend(nodes)
            return
        reached: list[_Node] = []
        probe(found, reached)
        out.extend(reached)
        if len(table) >= _REMEMBERED:
            if hits < _REMEMBERED:
                memo = None
                return
            table.clear()
            hits = 0
        table[value] = tuple(reached)

    return single


def _exact_step(exact: dict[Any, list[_Node]]) -> Probe:
    get = exact.get

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            nodes = get(value if type(value) is str else event_key(value))
            if nodes:
                out.extend(nodes)

    return step


def _folded_step(folded: dict[str, list[_Node]]) -> Probe:
    get = folded.get

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            if type(value) is str and value.isascii():
                nodes = get(value.lower())
                if nodes:
                    out.extend(nodes)

    return step


def _address_step(addresses: list[tuple[Address, _Node]]) -> Probe:
    blocks = tuple((address.bits, address.low, address.high, node) for address, node in addresses)

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            if type(value) is str:
                ip = parse_ip(value)
                if ip is not None:
                    bits, number = ip
                    for family, low, high, node in blocks:
                        if family == bits and low <= number <= high:
                            out.append(node)

    return step


_EXACT_INT = 2**53


def _numeric_step(numeric: list[tuple[Numeric, _Node]]) -> Probe:
    ranges = tuple((n.low, n.high, not n.low_open, not n.high_open, node) for n, node in numeric)

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # infinite or NaN: not comparable
                    continue
            elif kind is not int or not -_EXACT_INT <= value <= _EXACT_INT:
                if kind is str:
                    continue
                value = event_key(value)
                if type(value) is not float:
                    continue
            for low, high, low_in, high_in, node in ranges:
                if (low < value or (low_in and value == low)) and (
                    value < high or (high_in and value == high)
                ):
                    out.append(node)

    return step


def _anything_but_step(anything_but: list[tuple[frozenset[Any], _Node]]) -> Probe:
    excluded = tuple(anything_but)

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            key = value if type(value) is str else event_key(value)
            for keys, node in excluded:
                if key not in keys:
                    out.append(node)

    return step


def _scan_step(scan: list[tuple[Matcher, _Node]]) -> Probe:
    tests = tuple((matcher.test, node) for matcher, node in scan)

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            for test, node in tests:
                if test(value):
                    out.append(node)

    return step


def _slices(tables: list[tuple[int, dict[str, list[_Node]]]], *, head: bool, fold: bool) -> Probe:
    """A step that looks up the value's head (or tail) of every length in ``tables``."""
    ordered = tuple(tables)
    if len(ordered) == 1 and not fold:
        ((length, table),) = ordered
        get = table.get
        if head:

            def one_head(found: list[Any], out: list[_Node]) -> None:
                for value in found:
                    if type(value) is str:
                        nodes = get(value[:length])
                        if nodes:
                            out.extend(nodes)

            return one_head

        def one_tail(found: list[Any], out: list[_Node]) -> None:
            for value in found:
                if type(value) is str and len(value) >= length:
                    nodes = get(value[len(value) - length :])
                    if nodes:
                        out.extend(nodes)

        return one_tail

    def step(found: list[Any], out: list[_Node]) -> None:
        for value in found:
            if type(value) is not str:
                continue
            size = len(value)
            for length, table in ordered:
                if length > size:
                    break
                part = value[:length] if head else value[size - length :]
                if fold:
                    if not part.isascii():
                        continue
                    part = part.lower()
                nodes = table.get(part)
                if nodes:
                    out.extend(nodes)

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

    __slots__ = ("_dirty", "_inserted", "_need", "_paths", "_root", "_rules")

    def __init__(self) -> None:
        self._rules: dict[str, Pattern] = {}
        self._root = _Node()
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
        self._root = _Node()
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
                    child = node.children[condition] = _Node()
                    group = node.groups.get(condition.path)
                    if group is None:
                        group = node.groups[condition.path] = _Group()
                    group.add_condition(condition, child)
                    node.refresh()
                node = child
            node.ends = (*node.ends, _End(name, fields))

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
