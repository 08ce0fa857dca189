"""Probes: how the values of one field path lead to trie nodes, one step per operator family
(exact values, prefixes and suffixes by length, case-folded text, IP ranges, numeric ranges,
anything-but, existence, and the operators tested one by one), plus :func:`remembered`, the
memo that spares repeated strings the costlier text steps.

A probe appends the nodes it reaches to a list, maybe repeated; the trie
(:mod:`~setpiece.patterns._trie`) composes the steps a group needs into its probe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from setpiece.patterns._cidr import parse_ip
from setpiece.patterns._matchers import Address, Matcher, Numeric
from setpiece.patterns._numbers import event_key

__all__ = [
    "Lengths",
    "Probe",
    "address_step",
    "anything_but_step",
    "exact_step",
    "folded_step",
    "nowhere",
    "numeric_step",
    "remembered",
    "scan_step",
    "slices",
]

N = TypeVar("N")

Probe = Callable[[list[Any], list[N]], None]
"""Appends to a list the children the values of one path (a list) lead to, maybe repeated."""


class Lengths(Generic[N]):
    """Strings of several lengths, looked up by slicing the value once per length."""

    __slots__ = ("by_length", "sorted")

    def __init__(self) -> None:
        self.by_length: dict[int, dict[str, list[N]]] = {}
        self.sorted: list[tuple[int, dict[str, list[N]]]] = []

    def add(self, text: str, node: N) -> None:
        table = self.by_length.get(len(text))
        if table is None:
            table = self.by_length[len(text)] = {}
            self.sorted = sorted(self.by_length.items())
        table.setdefault(text, []).append(node)


def nowhere(found: list[Any], out: list[N]) -> None:
    """The probe of a group before it is compiled (never called)."""
    raise AssertionError("probe of a group not compiled")


_REMEMBERED = 256
"""Values whose children a group remembers before it judges whether remembering pays."""


def remembered(probe: Probe[N]) -> Probe[N]:
    """``probe`` for one value, remembering the children each string leads to: text operators
    other than exact values (prefixes, wildcards, ...) cost far more than a lookup, and fields
    like ``source`` or a city repeat. When the table fills up with fewer hits than entries,
    the values hardly repeat (ids, amounts): the group stops remembering."""
    memo: dict[str, tuple[N, ...]] | None = {}
    hits = 0

    def single(found: list[Any], out: list[N]) -> None:
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
        reached: list[N] = []
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


def exact_step(exact: dict[Any, list[N]]) -> Probe[N]:
    get = exact.get

    def step(found: list[Any], out: list[N]) -> None:
        for value in found:
            nodes = get(value if type(value) is str else event_key(value))
            if nodes:
                out.extend(nodes)

    return step


def folded_step(folded: dict[str, list[N]]) -> Probe[N]:
    get = folded.get

    def step(found: list[Any], out: list[N]) -> None:
        for value in found:
            if type(value) is str and value.isascii():
                nodes = get(value.lower())
                if nodes:
                    out.extend(nodes)

    return step


def address_step(addresses: list[tuple[Address, N]]) -> Probe[N]:
    blocks = tuple((address.bits, address.low, address.high, node) for address, node in addresses)

    def step(found: list[Any], out: list[N]) -> None:
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


def numeric_step(numeric: list[tuple[Numeric, N]]) -> Probe[N]:
    ranges = tuple((n.low, n.high, not n.low_open, not n.high_open, node) for n, node in numeric)

    def step(found: list[Any], out: list[N]) -> None:
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


def anything_but_step(anything_but: list[tuple[frozenset[Any], N]]) -> Probe[N]:
    excluded = tuple(anything_but)

    def step(found: list[Any], out: list[N]) -> None:
        for value in found:
            key = value if type(value) is str else event_key(value)
            for keys, node in excluded:
                if key not in keys:
                    out.append(node)

    return step


def scan_step(scan: list[tuple[Matcher, N]]) -> Probe[N]:
    tests = tuple((matcher.test, node) for matcher, node in scan)

    def step(found: list[Any], out: list[N]) -> None:
        for value in found:
            for test, node in tests:
                if test(value):
                    out.append(node)

    return step


def slices(tables: list[tuple[int, dict[str, list[N]]]], *, head: bool, fold: bool) -> Probe[N]:
    """A step that looks up the value's head (or tail) of every length in ``tables``."""
    ordered = tuple(tables)
    if len(ordered) == 1 and not fold:
        ((length, table),) = ordered
        get = table.get
        if head:

            def one_head(found: list[Any], out: list[N]) -> None:
                for value in found:
                    if type(value) is str:
                        nodes = get(value[:length])
                        if nodes:
                            out.extend(nodes)

            return one_head

        def one_tail(found: list[Any], out: list[N]) -> None:
            for value in found:
                if type(value) is str and len(value) >= length:
                    nodes = get(value[len(value) - length :])
                    if nodes:
                        out.extend(nodes)

        return one_tail

    def step(found: list[Any], out: list[N]) -> None:
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

