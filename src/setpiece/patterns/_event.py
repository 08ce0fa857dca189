"""Events flattened to leaves, and the array-consistency search over them.

``flatten`` walks only the parts of an event some pattern can look at (``need`` maps every field
path and every dotted prefix of one to flags) and returns, per path, the leaf values and for each
leaf its *chain*: the ``(array id, index)`` pairs of the arrays it sits in, outermost first.
Two leaves are consistent when they agree on the index of every array they both sit in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from setpiece.errors import PatternError
from setpiece.patterns._json import decode_event

__all__ = ["LEAF", "NEST", "Chain", "Flat", "flatten", "need_map", "search"]

LEAF: Final = 1
"""Flag: a pattern tests the values at this path."""
NEST: Final = 2
"""Flag: a pattern tests a path below this one."""
MAX_EVENT_DEPTH: Final = 512

Chain = tuple[tuple[int, int], ...]


def need_map(paths: Iterable[str], into: dict[str, int] | None = None) -> dict[str, int]:
    need = {} if into is None else into
    for path in paths:
        need[path] = need.get(path, 0) | LEAF
        end = path.find(".")
        while end != -1:
            prefix = path[:end]
            need[prefix] = need.get(prefix, 0) | NEST
            end = path.find(".", end + 1)
    return need


class Flat:
    """The leaves of one event. ``nested`` is set when an array holds objects or arrays, the
    only case where array consistency can reject a combination of leaves."""

    __slots__ = ("_index", "chains", "nested", "values")

    def __init__(self) -> None:
        self.values: dict[str, list[object]] = {}
        self.chains: dict[str, list[Chain]] = {}
        self.nested = False
        self._index: dict[str, dict[tuple[int, int], list[int]]] = {}

    def consistent(self, path: str, membership: dict[int, int]) -> list[int]:
        """Indexes of the leaves at ``path`` consistent with ``membership``."""
        chains = self.chains[path]
        if not membership:
            return list(range(len(chains)))
        index = self._index.get(path)
        if index is None:
            index = {}
            for i, chain in enumerate(chains):
                for link in chain:
                    index.setdefault(link, []).append(i)
            self._index[path] = index
        candidates: Iterable[int] | None = None
        best = -1
        for array, position in membership.items():
            found = index.get((array, position))
            if found is not None:
                if candidates is None or len(found) < best:
                    candidates, best = found, len(found)
        if candidates is None:
            candidates = range(len(chains))
        result = []
        for i in candidates:
            for array, position in chains[i]:
                if membership.get(array, position) != position:
                    break
            else:
                result.append(i)
        return result


def flatten(event: Any, need: dict[str, int]) -> Flat:
    if isinstance(event, str | bytes | bytearray | memoryview):
        event = decode_event(event if isinstance(event, str) else bytes(event))
    if not isinstance(event, dict):
        raise PatternError(f"event: must be a JSON object, not {type(event).__name__}")
    flat = Flat()
    if need:
        _walk_object(event, "", need, flat, (), [0], 0)
    return flat


def _walk_object(
    obj: dict[str, Any],
    prefix: str,
    need: dict[str, int],
    flat: Flat,
    chain: Chain,
    counter: list[int],
    depth: int,
) -> None:
    values, chains = flat.values, flat.chains
    for key, value in obj.items():
        path = prefix + "." + key if prefix else key
        flags = need.get(path)
        if not flags:
            continue
        kind = type(value)
        if kind is dict:
            if flags & NEST:
                _walk_object(value, path, need, flat, chain, counter, depth + 1)
        elif kind is list:
            _walk_array(value, path, flags, need, flat, chain, counter, depth + 1)
        elif flags & LEAF:
            found = values.get(path)
            if found is None:
                values[path] = [value]
                chains[path] = [chain]
            else:
                found.append(value)
                chains[path].append(chain)


def _walk_array(
    items: list[Any],
    path: str,
    flags: int,
    need: dict[str, int],
    flat: Flat,
    chain: Chain,
    counter: list[int],
    depth: int,
) -> None:
    if depth > MAX_EVENT_DEPTH:
        raise PatternError(f"event: {path} is nested more than {MAX_EVENT_DEPTH} levels deep")
    counter[0] += 1
    array = counter[0]
    leaf = flags & LEAF
    values = chains = None
    for i, item in enumerate(items):
        kind = type(item)
        if kind is dict:
            flat.nested = True
            if flags & NEST:
                _walk_object(item, path, need, flat, (*chain, (array, i)), counter, depth + 1)
        elif kind is list:
            flat.nested = True
            _walk_array(item, path, flags, need, flat, (*chain, (array, i)), counter, depth + 1)
        elif leaf:
            if values is None:
                values = flat.values.setdefault(path, [])
                chains = flat.chains.setdefault(path, [])
            values.append(item)
            chains.append((*chain, (array, i)))  # type: ignore[union-attr]


Field = tuple[str, Callable[[object], bool], bool, bool]
"""(path, value test, absence allowed, has value alternatives) of one condition."""


def search(fields: tuple[Field, ...], flat: Flat) -> bool:
    """Whether leaves consistent across arrays satisfy every field, tried in field order.

    As in event-ruler, ``exists: false`` holds when no leaf at its path is consistent with the
    leaves chosen for the fields before it.
    """
    failed: set[tuple[int, tuple[tuple[int, int], ...]]] = set()

    def step(i: int, membership: dict[int, int]) -> bool:
        if i == len(fields):
            return True
        memo = (i, tuple(membership.items()))
        if memo in failed:
            return False
        path, test, absent_ok, has_values = fields[i]
        values = flat.values.get(path)
        if values is None:
            if absent_ok and step(i + 1, membership):
                return True
        else:
            chains = flat.chains[path]
            candidates = flat.consistent(path, membership)
            if absent_ok and not candidates and step(i + 1, membership):
                return True
            if has_values:
                for j in candidates:
                    if test(values[j]):
                        chain = chains[j]
                        if chain:
                            extended = dict(membership)
                            extended.update(chain)
                        else:
                            extended = membership
                        if step(i + 1, extended):
                            return True
        failed.add(memo)
        return False

    return step(0, {})
