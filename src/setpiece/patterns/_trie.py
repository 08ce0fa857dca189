"""The trie of sub-rules: a :class:`Node` per shared prefix of conditions, its :class:`Group`
per field path (the tables from a value to the child nodes it leads to, and the probe made of
them), the :class:`End` of each sub-rule, and the visit function generated per node shape
(``_visitor``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setpiece.patterns._codegen import factory
from setpiece.patterns._event import Field, Flat, consistent
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
from setpiece.patterns._probes import (
    Lengths,
    Probe,
    address_step,
    anything_but_step,
    exact_step,
    folded_step,
    nowhere,
    numeric_step,
    remembered,
    scan_step,
    slices,
)

__all__ = ["End", "Group", "Node", "Visit"]


class End:
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


class Node:
    __slots__ = ("children", "ends", "groups", "visit")

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.visit: Visit | None = _leave  # what match does at this node; None: stale
        self.children: dict[Condition, Node] = {}
        self.ends: tuple[End, ...] = ()

    def refresh(self) -> None:
        """The groups changed: ``visit`` is made again when an event next reaches the node."""
        self.visit = None

    def freeze(self) -> Visit:
        self.visit = visit = _visitor(self.groups)
        return visit


Visit = Callable[[Callable[[str], "list[Any] | None"], "list[Node]", set[str]], None]
"""What ``RuleSet.match`` does at a node: given the lookup of an event's values by path, the
stack of nodes to visit and the paths with leaves inside arrays of objects (``Flat.deep``),
push the children the event's values lead to."""


def _leave(get: Callable[[str], list[Any] | None], stack: list[Node], deep: set[str]) -> None:
    """The visit of a node without groups: nothing below it."""


_VISITORS: dict[str, Callable[..., Visit]] = {}
_MAX_VISITORS = 1024


def _visitor(groups: dict[str, Group]) -> Visit:
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


class Group:
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
        self.exact: dict[Any, list[Node]] = {}
        self.prefix: Lengths[Node] | None = None
        self.suffix: Lengths[Node] | None = None
        self.folded: dict[str, list[Node]] = {}
        self.folded_prefix: Lengths[Node] | None = None
        self.folded_suffix: Lengths[Node] | None = None
        self.addresses: list[tuple[Address, Node]] = []
        self.numeric: list[tuple[Numeric, Node]] = []
        self.anything_but: list[tuple[frozenset[Any], Node]] = []
        self.exists: list[Node] = []
        self.absent: list[Node] = []
        self.scan: list[tuple[Matcher, Node]] = []
        self.exact_only = True
        self.multi = False
        self.probe: Probe[Node] | None = None
        self.single: Probe[Node] = nowhere  # the probe for one value; made with ``probe``

    def add_condition(self, condition: Condition, node: Node) -> None:
        matchers = condition.matchers
        for matcher in matchers:
            self.add(matcher, node)
        if len(matchers) > 1 and not all(type(m) is Exact for m in matchers):
            self.multi = True
        if condition.absent_ok:
            self.absent.append(node)

    def add(self, matcher: Matcher, node: Node) -> None:
        self.probe = None
        kind = type(matcher)
        if kind is Exact:
            self.exact.setdefault(matcher.key, []).append(node)  # type: ignore[union-attr]
            return
        self.exact_only = False
        if kind is Prefix:
            self.prefix = self.prefix or Lengths()
            self.prefix.add(matcher.text, node)  # type: ignore[union-attr]
        elif kind is Suffix:
            self.suffix = self.suffix or Lengths()
            self.suffix.add(matcher.text, node)  # type: ignore[union-attr]
        elif kind is IgnoreCase and matcher.text.isascii():  # type: ignore[union-attr]
            assert isinstance(matcher, IgnoreCase)
            folded = matcher.text.lower()
            if matcher.mode == "equals":
                self.folded.setdefault(folded, []).append(node)
            elif matcher.mode == "prefix":
                self.folded_prefix = self.folded_prefix or Lengths()
                self.folded_prefix.add(folded, node)
            else:
                self.folded_suffix = self.folded_suffix or Lengths()
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

    def compile(self) -> Probe[Node]:
        """The probe of this group, made of only the steps it needs; each step takes all the
        values of the path at once."""
        steps: list[Probe[Node]] = []
        if self.exact:
            steps.append(exact_step(self.exact))
        if self.prefix is not None:
            steps.append(slices(self.prefix.sorted, head=True, fold=False))
        if self.suffix is not None:
            steps.append(slices(self.suffix.sorted, head=False, fold=False))
        if self.folded:
            steps.append(folded_step(self.folded))
        if self.folded_prefix is not None:
            steps.append(slices(self.folded_prefix.sorted, head=True, fold=True))
        if self.folded_suffix is not None:
            steps.append(slices(self.folded_suffix.sorted, head=False, fold=True))
        if self.addresses:
            steps.append(address_step(self.addresses))
        if self.numeric:
            steps.append(numeric_step(self.numeric))
        if self.anything_but:
            steps.append(anything_but_step(self.anything_but))
        if self.exists:
            exists = tuple(self.exists)

            def exists_step(found: list[Any], out: list[Node]) -> None:
                out.extend(exists)

            steps.append(exists_step)
        if self.scan:
            steps.append(scan_step(self.scan))
        probe: Probe[Node]
        if len(steps) == 1:
            probe = steps[0]
        else:
            ordered = tuple(steps)

            def probe(found: list[Any], out: list[Node]) -> None:
                for step in ordered:
                    step(found, out)

        self.probe = probe
        if self.exact_only or not (
            self.prefix or self.suffix or self.folded or self.folded_prefix
            or self.folded_suffix or self.addresses or self.anything_but or self.scan
        ):  # fmt: skip
            self.single = probe
        else:
            self.single = remembered(probe)
        return probe
