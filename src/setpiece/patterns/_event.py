"""Events flattened to leaves, and the array-consistency search over them.

``flatten`` walks only the parts of an event some pattern can look at (``Need``) and returns,
per path, the leaf values and for each leaf its *chain*: the ``(array id, index)`` pairs of the
arrays it sits in, outermost first. Two leaves are consistent when they agree on the index of
every array they both sit in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from setpiece.errors import PatternError
from setpiece.patterns._codegen import factory
from setpiece.patterns._json import decode_event

__all__ = [
    "LEAF",
    "NEST",
    "Chain",
    "Entry",
    "Flat",
    "Level",
    "Need",
    "consistent",
    "flatten",
    "search",
]

LEAF: Final = 1
"""Flag: a pattern tests the values at this path."""
NEST: Final = 2
"""Flag: a pattern tests a path below this one."""
MAX_EVENT_DEPTH: Final = 512

Chain = tuple[tuple[int, int], ...]


class Level:
    """The keys of one object some pattern looks at: ``entries`` maps a key to ``(path, flags,
    level below)``; flags are LEAF (values at this path are tested) and NEST (a longer path goes
    through it). ``direct`` lists the entries for a walk by lookup, which is right when no entry
    is NEST (``nested`` is false): then an event key with a dot cannot address any of them."""

    __slots__ = ("direct", "entries", "nested")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.direct: tuple[tuple[str, Entry], ...] = ()
        self.nested = False

    def refresh(self) -> None:
        self.direct = tuple(self.entries.items())
        self.nested = any(entry[1] & NEST for entry in self.entries.values())


Entry = tuple[str, int, Level]
"""(path, flags, level below) of one key."""


class Need:
    """The field paths some pattern tests, as a tree of key segments (``a.b`` is ``a`` -> ``b``).

    Fields no path names are never looked at, nor anything below them. After a few events,
    ``walker`` is a function made for this tree (see ``_specialise``); adding a path drops it.
    """

    __slots__ = ("paths", "tree", "uses", "walker")

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self.paths: set[str] = set()
        self.tree = Level()
        self.walker: Walker | None = None
        self.uses = 0
        self.add(paths)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def add(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path in self.paths:
                continue
            self.paths.add(path)
            self.walker = None
            self.uses = 0
            level = self.tree
            parts = path.split(".")
            for depth, part in enumerate(parts):
                leaf = depth == len(parts) - 1
                entry = level.entries.get(part)
                if entry is None:
                    entry = (".".join(parts[: depth + 1]), 0, Level())
                flags = entry[1] | (LEAF if leaf else NEST)
                level.entries[part] = (entry[0], flags, entry[2])
                level.refresh()
                level = entry[2]


def _dotted(level: Level, key: str) -> Entry | None:
    """The entry of an event key that itself contains dots (``{"a.b": 1}`` is ``a`` -> ``b``)."""
    entry = None
    for part in key.split("."):
        entry = level.entries.get(part)
        if entry is None:
            return None
        level = entry[2]
    return entry


class Flat:
    """The leaves of one event. ``deep`` holds the paths with a leaf inside an array of objects
    or arrays: only two such fields can conflict under array consistency."""

    __slots__ = ("_index", "chains", "deep", "values")

    def __init__(self) -> None:
        self.values: dict[str, list[object]] = {}
        self.chains: dict[str, list[Chain]] = {}  # only paths with a leaf inside an array
        self.deep: set[str] = set()
        self._index: dict[str, dict[tuple[int, int], list[int]]] | None = None

    def add_chain(self, path: str, position: int, chain: Chain, deep: bool) -> None:
        chains = self.chains.get(path)
        if chains is None:
            chains = self.chains[path] = []
        if len(chains) < position:
            chains.extend(() for _ in range(position - len(chains)))
        chains.append(chain)
        if deep:
            self.deep.add(path)

    def chains_of(self, path: str) -> list[Chain]:
        """The chain of each leaf at ``path`` (``()`` for a leaf in no array)."""
        chains = self.chains.get(path)
        size = len(self.values[path])
        if chains is None:
            chains = self.chains[path] = [()] * size
        elif len(chains) < size:
            chains.extend(() for _ in range(size - len(chains)))
        return chains

    @property
    def nested(self) -> bool:
        return bool(self.deep)

    def consistent(self, path: str, membership: dict[int, int]) -> list[int]:
        """Indexes of the leaves at ``path`` consistent with ``membership``."""
        chains = self.chains_of(path)
        if not membership:
            return list(range(len(chains)))
        if len(chains) <= 8:
            return [
                i
                for i, chain in enumerate(chains)
                if all(membership.get(array, position) == position for array, position in chain)
            ]
        if self._index is None:
            self._index = {}
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
            if found is not None and (candidates is None or len(found) < best):
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


_MISSING: Final = object()


def flatten(event: Any, need: Need) -> Flat:
    if type(event) is not dict:
        if isinstance(event, _TEXT):
            event = decode_event(event if isinstance(event, str) else bytes(event))
        if not isinstance(event, dict):
            raise PatternError(f"event: must be a JSON object, not {type(event).__name__}")
    flat = Flat()
    if need.paths:
        walker = need.walker
        if walker is None:
            need.uses += 1
            if need.uses >= _SPECIALISE_AFTER:
                walker = need.walker = _specialise(need.tree)
        try:
            if walker is not None:
                walker(event, flat, flat.values, [0])
            else:
                _walk_object(event, need.tree, flat, (), [0], False, 0)
        except TypeError:
            raise PatternError("event: field names must be strings") from None
    return flat


_TEXT: Final = (str, bytes, bytearray, memoryview)


def _walk_object(
    obj: dict[str, Any],
    level: Level,
    flat: Flat,
    chain: Chain,
    counter: list[int],
    deep: bool,
    depth: int,
) -> None:
    """The generic walk (the generated walkers of ``_specialise`` take over once a Need is
    warm): entries by lookup when no event key can address them otherwise, else every key."""
    direct = level.direct
    if len(obj) >= len(direct) and not (level.nested and "." in "".join(obj)):
        # No key with a dot can address a path below (a TypeError for a key that is not a
        # string): each entry is found by looking it up, the other keys are never touched.
        lookup = obj.get
        for key, entry in direct:
            value = lookup(key, _MISSING)
            if value is not _MISSING:
                _field(value, entry, flat, chain, counter, deep, depth)
        return
    # Every key of the object: a key with dots may address a path below a NEST entry.
    get = level.entries.get
    for key, value in obj.items():
        found = get(key)
        if found is None:
            if "." not in key:  # a TypeError for a key that is not a string
                continue
            found = _dotted(level, key)
            if found is None:
                continue
        _field(value, found, flat, chain, counter, deep, depth)


def _field(
    value: Any, entry: Entry, flat: Flat, chain: Chain, counter: list[int], deep: bool, depth: int
) -> None:
    """One event value at ``entry``: walked into, walked along, or recorded as a leaf."""
    kind = type(value)
    if kind is dict:
        if entry[1] & NEST:
            _walk_object(value, entry[2], flat, chain, counter, deep, depth + 1)
    elif kind is list:
        _walk_array(value, entry, flat, chain, counter, deep, depth + 1)
    elif entry[1] & LEAF:
        path = entry[0]
        values = flat.values
        found = values.get(path)
        if found is None:
            found = values[path] = [value]
        else:
            found.append(value)
        if chain:
            flat.add_chain(path, len(found) - 1, chain, deep)


Walker = Callable[[dict[str, Any], Flat, dict[str, list[object]], list[int]], None]
"""Flattens an event (``flat``, ``flat.values``, the array counter) outside any array."""

_SPECIALISE_AFTER: Final = 64
"""Events flattened by the generic walk before a ``Need`` gets a walker of its own: making one
costs about as much as flattening some tens of events."""

_MAX_FACTORIES: Final = 512
_FACTORIES: dict[str, Callable[..., Walker]] = {}
"""Compiled walker factories by source text: trees of the same shape share one."""


def _specialise(tree: Level) -> Walker:
    """A walker for ``tree``: the generic walk with the tree unrolled into code.

    Each level gets a function for objects outside arrays whose route from the event's root has
    no dotted key, and one for such objects inside arrays of objects (given their chain). Each
    makes the generic walk's choice first: a scan of every key when the object is small or,
    where a dotted key could address a path below, has one; then it calls ``_walk_object``.
    Otherwise it reads each entry by a constant key. Outside arrays such a path has no other
    route to it, so its one leaf is stored without a look at what is there. Arrays of objects
    under an entry that is not itself tested get a loop of their own; other arrays go to
    ``_walk_array``, as in the generic walk. Keys, paths and levels are arguments of the
    factory, never part of the source text, so trees of one shape share the compiled code.
    """
    consts: list[object] = []
    functions: list[str] = []
    made: dict[tuple[int, bool], str] = {}

    def const(value: object) -> str:
        consts.append(value)
        return f"c{len(consts) - 1}"

    def emit(level: Level, depth: int, inside: bool) -> str:
        """The function for ``level`` (``inside``: for objects in arrays of objects)."""
        done = made.get((id(level), inside))
        if done is not None:
            return done
        below = {
            key: emit(entry[2], depth + 1, inside)
            for key, entry in level.direct
            if entry[1] & NEST
        }
        loops = {
            key: emit(entry[2], depth + 2, True)
            for key, entry in level.direct
            if entry[1] == NEST and not inside and depth + 1 <= MAX_EVENT_DEPTH
        }
        name = made[(id(level), inside)] = f"w{len(functions)}"
        chain = "chain" if inside else "()"
        args = "flat, values, counter, chain" if inside else "flat, values, counter"
        code: list[str] = []

        def put(indent: int, line: str) -> None:
            code.append("    " * indent + line)

        put(1, f"def {name}(obj, {args}):")
        size = len(level.direct)
        if level.nested:
            put(2, f"if len(obj) < {size} or '.' in ''.join(obj):")
        else:
            put(2, f"if len(obj) < {size}:")
        put(3, f"walk_object(obj, {const(level)}, flat, {chain}, counter, {inside}, {depth})")
        put(3, "return")
        put(2, "get = obj.get")
        for key, entry in level.direct:
            flags = entry[1]
            put(2, f"v = get({const(key)}, MISSING)")
            put(2, "if v is not MISSING:")
            put(3, "t = type(v)")
            if flags & NEST:
                put(3, "if t is dict:")
                put(4, f"{below[key]}(v, {args})")
                put(3, "elif t is list:")
            else:
                put(3, "if t is list:")
            if key in loops:
                # An array of objects: each element's chain is (this array, its index).
                put(4, "counter[0] += 1")
                put(4, "array = counter[0]")
                put(4, "for i, item in enumerate(v):")
                put(5, "kind = type(item)")
                put(5, "if kind is dict:")
                put(6, f"{loops[key]}(item, flat, values, counter, ((array, i),))")
                put(5, "elif kind is list:")
                put(6, f"walk_array(item, {const(entry)}, flat, ((array, i),), counter, True,")
                put(7, f"{depth + 2})")
            else:
                put(4, f"walk_array(v, {const(entry)}, flat, {chain}, counter, {inside},")
                put(5, f"{depth + 1})")
            if not flags & LEAF:
                continue
            path = const(entry[0])
            put(3, "elif t is not dict:")
            if not inside:
                put(4, f"values[{path}] = [v]")
                continue
            put(4, f"found = values.get({path})")
            put(4, "if found is None:")
            put(5, f"values[{path}] = [v]")
            put(5, f"flat.chains[{path}] = [chain]")
            put(5, f"flat.deep.add({path})")
            put(4, "else:")
            put(5, "found.append(v)")
            put(5, f"chains = flat.chains.get({path})")
            put(5, "if chains is not None and len(chains) + 1 == len(found):")
            put(6, "chains.append(chain)")
            put(6, f"flat.deep.add({path})")
            put(5, "else:")
            put(6, f"flat.add_chain({path}, len(found) - 1, chain, True)")
        functions.append("\n".join(code))
        return name

    top = emit(tree, 0, False)
    names = ", ".join(f"c{i}" for i in range(len(consts)))
    source = (
        f"def factory(MISSING, walk_object, walk_array, {names}):\n"
        + "\n".join(functions)
        + f"\n    return {top}\n"
    )
    walker: Walker = factory(source, _FACTORIES, _MAX_FACTORIES)(
        _MISSING, _walk_object, _walk_array, *consts
    )
    return walker


def _walk_array(
    items: list[Any],
    entry: Entry,
    flat: Flat,
    chain: Chain,
    counter: list[int],
    deep: bool,
    depth: int,
) -> None:
    path, flags, level = entry
    if depth > MAX_EVENT_DEPTH:
        raise PatternError(f"event: {path} is nested more than {MAX_EVENT_DEPTH} levels deep")
    counter[0] += 1
    array = counter[0]
    leaf = flags & LEAF
    nest = flags & NEST
    values: list[object] | None = None
    chains: list[Chain] = []
    for i, item in enumerate(items):
        kind = type(item)
        if kind is dict:
            if nest:
                _walk_object(item, level, flat, (*chain, (array, i)), counter, True, depth + 1)
        elif kind is list:
            _walk_array(item, entry, flat, (*chain, (array, i)), counter, True, depth + 1)
        elif leaf:
            if values is None:
                values = flat.values.setdefault(path, [])
                chains = flat.chains.setdefault(path, [])
                if deep:
                    flat.deep.add(path)
                if len(chains) < len(values):  # leaves of this path outside arrays came first
                    chains.extend(() for _ in range(len(values) - len(chains)))
            values.append(item)
            chains.append((*chain, (array, i)))


Field = tuple[str, Callable[[object], bool], bool, bool]
"""(path, value test, absence allowed, has value alternatives) of one condition."""


def consistent(fields: tuple[Field, ...], flat: Flat) -> bool:
    """Whether fields that each hold on their own also hold together under array consistency.

    Only fields at paths with leaves inside arrays of objects (``flat.deep``) can conflict:
    any other field's arrays are its own. So only those take part in the search, and with
    one of them (that is not satisfied by absence, which is judged per array element) there
    is nothing to search.
    """
    deep = flat.deep
    if not deep:
        return True
    inside = tuple(field for field in fields if field[0] in deep)
    if not inside or (len(inside) == 1 and not inside[0][2]):
        return True
    return search(inside, flat)


def search(fields: tuple[Field, ...], flat: Flat) -> bool:
    """Whether leaves consistent across arrays satisfy every field.

    A field that is satisfied by absence (``exists: false``) is judged last, against the array
    elements every other field's chosen leaf sits in: ``{"name": ["Ann"], "email":
    [{"exists": false}]}`` matches when the element holding Ann has no email, whatever other
    elements hold.
    """
    # Per field, the chains of the leaves that pass its test: the search picks one per field.
    required: list[list[Chain]] = []
    optional: list[tuple[list[Chain], str]] = []
    all_values = flat.values
    for path, test, absent_ok, has_values in fields:
        values = all_values.get(path)
        passing: list[Chain] = []
        if values is not None and has_values:
            chains = flat.chains_of(path)
            passing = [chains[j] for j, value in enumerate(values) if test(value)]
        if absent_ok:
            optional.append((passing, path))
        elif not passing:
            return False
        else:
            required.append(passing)
    if not optional and len(required) > 1:
        arrays = {chain[0][0] for passing in required for chain in passing if len(chain) == 1}
        if len(arrays) == 1 and all(len(chain) == 1 for passing in required for chain in passing):
            # All in one array of objects, no deeper: the fields must meet in one element.
            common = {chain[0] for chain in required[0]}
            for passing in required[1:]:
                common.intersection_update(chain[0] for chain in passing)
            return bool(common)
    required.sort(key=len)  # fewest choices first
    order: list[tuple[list[Chain], str | None]] = [(passing, None) for passing in required]
    order.extend(optional)
    count = len(order)
    choices = 1
    for passing, _ in order:
        choices *= len(passing) + 1
    remember = choices > 64  # small searches are cheaper than their memo
    failed: set[tuple[int, tuple[tuple[int, int], ...], tuple[str, ...]]] = set()
    indexes: dict[int, dict[tuple[int, int], list[Chain]]] = {}

    def candidates(i: int, passing: list[Chain], membership: dict[int, int]) -> list[Chain]:
        if not membership:
            return passing
        pool = passing
        if len(passing) > 8:
            index = indexes.get(i)
            if index is None:
                index = indexes[i] = {}
                for chain in passing:
                    for link in chain:
                        index.setdefault(link, []).append(chain)
            for link in membership.items():
                found = index.get(link)
                if found is not None and len(found) < len(pool):
                    pool = found
        return [
            chain
            for chain in pool
            if all(membership.get(array, position) == position for array, position in chain)
        ]

    def step(i: int, membership: dict[int, int], pending: tuple[str, ...]) -> bool:
        if i == count:
            return not any(
                path in all_values and flat.consistent(path, membership) for path in pending
            )
        if remember:
            memo = (i, tuple(sorted(membership.items())), pending)
            if memo in failed:
                return False
        passing, absent_path = order[i]
        if absent_path is not None and step(i + 1, membership, (*pending, absent_path)):
            return True
        for chain in candidates(i, passing, membership):
            if chain:
                extended = dict(membership)
                extended.update(chain)
            else:
                extended = membership
            if step(i + 1, extended, pending):
                return True
        if remember:
            failed.add(memo)
        return False

    return step(0, {}, ())
