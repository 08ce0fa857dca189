"""JSONPath as Step Functions evaluates it (the Jayway dialect), plus ResultPath writes.

Supported syntax: ``$`` (the input), ``$$`` (the context object), ``$name`` (a workflow
variable); ``.name``, ``['name']`` / ``["name"]``, ``['a','b']``, ``.*`` / ``[*]``, ``..name``
(deep scan), ``[n]`` (negative counts from the end), ``[n,m]``, ``[start:end:step]``, filters
``[?(@.price < 10 && @.tag == 'x')]`` (``== != < <= > >= =~ in nin``, ``&& || !``, existence)
and the ``length()`` function.

A *definite* path (no wildcard, deep scan, slice, union or filter) yields one value and fails if
it is missing; an indefinite path yields a list of every match (possibly empty).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "JsonPath",
    "PathNotFound",
    "PathSyntaxError",
    "compile_path",
    "set_result_path",
]


class PathSyntaxError(ValueError):
    """A JSONPath expression cannot be parsed."""


class PathNotFound(Exception):
    """A definite path does not resolve against the document (Jayway wording)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ----------------------------------------------------------------------------------- segments


@dataclass(frozen=True, slots=True)
class _Field:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Index:
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Wildcard:
    pass


@dataclass(frozen=True, slots=True)
class _Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True, slots=True)
class _Filter:
    predicate: Callable[[Any, Any], bool]
    text: str


@dataclass(frozen=True, slots=True)
class _Deep:
    inner: _Field | _Index | _Wildcard | _Slice | _Filter


@dataclass(frozen=True, slots=True)
class _Length:
    pass


_Segment = _Field | _Index | _Wildcard | _Slice | _Filter | _Deep | _Length


def _quote(name: str) -> str:
    return "['" + name + "']"


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled JSONPath. ``root`` is ``"$"``, ``"$$"`` or a variable name."""

    text: str
    root: str
    segments: tuple[_Segment, ...]
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
        return self.definite and all(isinstance(s, _Field | _Index) for s in self.segments)

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
            if isinstance(seg, _Field):
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
            elif isinstance(seg, _Index):
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
            elif isinstance(seg, _Length):
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


def _apply(seg: _Segment, values: list[Any], root: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(seg, _Deep):
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
        if isinstance(seg, _Field):
            if isinstance(v, dict):
                for name in seg.names:
                    if name in v:
                        out.append(v[name])
        elif isinstance(seg, _Index):
            if isinstance(v, list):
                for idx in seg.indexes:
                    j = idx + len(v) if idx < 0 else idx
                    if 0 <= j < len(v):
                        out.append(v[j])
        elif isinstance(seg, _Wildcard):
            out.extend(_children(v))
        elif isinstance(seg, _Slice):
            if isinstance(v, list):
                out.extend(v[seg.start : seg.stop : seg.step])
        elif isinstance(seg, _Filter):
            items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else []
            out.extend(item for item in items if seg.predicate(item, root))
        elif isinstance(seg, _Length) and isinstance(v, list | dict | str):
            out.append(len(v))
    return out


# ------------------------------------------------------------------------------------ parsing

_NAME_STOP = frozenset(".[( ")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> PathSyntaxError:
        return PathSyntaxError(f"invalid JSONPath {self.text!r}: {message} at position {self.pos}")

    def peek(self, n: int = 0) -> str:
        i = self.pos + n
        return self.text[i] if i < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def parse(self) -> JsonPath:
        t = self.text
        if not t.startswith("$"):
            raise self.error('must start with "$"')
        if t.startswith("$$"):
            root = "$$"
            self.pos = 2
        else:
            self.pos = 1
            start = self.pos
            while self.pos < len(t) and (t[self.pos].isalnum() or t[self.pos] == "_"):
                self.pos += 1
            root = t[start : self.pos] or "$"
        segments: list[_Segment] = []
        while self.pos < len(t):
            segments.append(self.segment())
        definite = (
            all(isinstance(s, _Field | _Index | _Length) for s in segments)
            and all(len(s.names) == 1 for s in segments if isinstance(s, _Field))
            and all(len(s.indexes) == 1 for s in segments if isinstance(s, _Index))
        )
        return JsonPath(t, root, tuple(segments), definite)

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.error("expected a property name")
        return self.text[start : self.pos]

    def segment(self) -> _Segment:
        c = self.peek()
        if c == ".":
            if self.peek(1) == ".":
                self.pos += 2
                if self.peek() == "[":
                    inner = self.bracket()
                elif self.peek() == "*":
                    self.pos += 1
                    inner = _Wildcard()
                else:
                    inner = _Field((self.name(),))
                if isinstance(inner, _Deep | _Length):
                    raise self.error("unsupported deep scan")
                return _Deep(inner)
            self.pos += 1
            if self.peek() == "*":
                self.pos += 1
                return _Wildcard()
            if self.text.startswith("length()", self.pos) and self.pos + 8 == len(self.text):
                self.pos += 8
                return _Length()
            return _Field((self.name(),))
        if c == "[":
            return self.bracket()
        raise self.error(f"unexpected {c!r}")

    def quoted(self) -> str:
        quote = self.peek()
        self.pos += 1
        out: list[str] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.error("unterminated string")
            if c == "\\" and self.peek(1) in (quote, "\\"):
                # only the quote in use and the backslash itself are escapable (Jayway)
                out.append(self.peek(1))
                self.pos += 2
                continue
            self.pos += 1
            if c == quote:
                return "".join(out)
            out.append(c)

    def integer(self) -> int | None:
        self.skip_ws()
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        while self.peek().isdigit():
            self.pos += 1
        if self.pos == start:
            return None
        try:
            return int(self.text[start : self.pos])
        except ValueError:
            raise self.error("expected an integer") from None

    def expect(self, s: str) -> None:
        self.skip_ws()
        if not self.text.startswith(s, self.pos):
            raise self.error(f"expected {s!r}")
        self.pos += len(s)

    def bracket(self) -> _Segment:
        self.pos += 1  # [
        self.skip_ws()
        c = self.peek()
        seg: _Segment
        if c in ("'", '"'):
            names = [self.quoted()]
            self.skip_ws()
            while self.peek() == ",":
                self.pos += 1
                self.skip_ws()
                if self.peek() not in ("'", '"'):
                    raise self.error("expected a quoted name")
                names.append(self.quoted())
                self.skip_ws()
            seg = _Field(tuple(names))
        elif c == "*":
            self.pos += 1
            seg = _Wildcard()
        elif c == "?":
            self.pos += 1
            self.expect("(")
            start = self.pos
            parser = _FilterParser(self.text, self.pos)
            predicate = parser.parse_or()
            self.pos = parser.pos
            text = self.text[start : self.pos]
            self.expect(")")
            seg = _Filter(predicate, text)
        else:
            first = self.integer()
            self.skip_ws()
            if self.peek() == ":":
                parts: list[int | None] = [first]
                while self.peek() == ":":
                    self.pos += 1
                    parts.append(self.integer())
                    self.skip_ws()
                if len(parts) > 3:
                    raise self.error("bad slice")
                parts += [None] * (3 - len(parts))
                if parts[2] == 0:
                    raise self.error("slice step cannot be zero")
                seg = _Slice(parts[0], parts[1], parts[2])
            else:
                if first is None:
                    raise self.error("expected an index, a quoted name, '*' or a filter")
                idx = [first]
                while self.peek() == ",":
                    self.pos += 1
                    n = self.integer()
                    if n is None:
                        raise self.error("expected an index")
                    idx.append(n)
                    self.skip_ws()
                seg = _Index(tuple(idx))
        self.expect("]")
        return seg


# ------------------------------------------------------------------------- filter expressions

_Pred = Callable[[Any, Any], bool]
_Operand = Callable[[Any, Any], tuple[bool, Any]]  # (present, value)

_FILTER_OP = re.compile(r"==|!=|<=|>=|=~|<|>|(?:nin|in)(?=[\s\[])")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _same(a, b)
    if op == "!=":
        return not _same(a, b)
    if op == "in":
        return isinstance(b, list) and any(_same(a, x) for x in b)
    if op == "nin":
        return isinstance(b, list) and not any(_same(a, x) for x in b)
    if op == "=~":
        return isinstance(a, str) and isinstance(b, re.Pattern) and bool(b.fullmatch(a))
    nums = (
        isinstance(a, int | float)
        and isinstance(b, int | float)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    )
    strs = isinstance(a, str) and isinstance(b, str)
    if not (nums or strs):
        return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    raise AssertionError(op)


class _FilterParser(_Parser):
    def __init__(self, text: str, pos: int) -> None:
        super().__init__(text)
        self.pos = pos

    def parse_or(self) -> _Pred:
        left = self.parse_and()
        while True:
            self.skip_ws()
            if self.text.startswith("||", self.pos):
                self.pos += 2
                right = self.parse_and()
                left = (lambda lhs, rhs: lambda v, r: lhs(v, r) or rhs(v, r))(left, right)
            else:
                return left

    def parse_and(self) -> _Pred:
        left = self.parse_not()
        while True:
            self.skip_ws()
            if self.text.startswith("&&", self.pos):
                self.pos += 2
                right = self.parse_not()
                left = (lambda lhs, rhs: lambda v, r: lhs(v, r) and rhs(v, r))(left, right)
            else:
                return left

    def parse_not(self) -> _Pred:
        self.skip_ws()
        if self.peek() == "!" and self.peek(1) != "=":
            self.pos += 1
            inner = self.parse_not()
            return lambda v, r: not inner(v, r)
        if self.peek() == "(":
            self.pos += 1
            inner = self.parse_or()
            self.expect(")")
            return inner
        return self.parse_comparison()

    def parse_comparison(self) -> _Pred:
        left = self.operand()
        self.skip_ws()
        m = _FILTER_OP.match(self.text, self.pos)
        if m is None:  # existence test: [?(@.name)]
            return lambda v, r: left(v, r)[0]
        self.pos = m.end()
        name = m.group(0)
        right = self.regex() if name == "=~" else self.operand()
        return self._comparison(left, name, right)

    @staticmethod
    def _comparison(left: _Operand, op: str, right: _Operand) -> _Pred:
        def pred(v: Any, r: Any) -> bool:
            lp, lv = left(v, r)
            rp, rv = right(v, r)
            if not (lp and rp):
                return False
            return _compare(op, lv, rv)

        return pred

    def regex(self) -> _Operand:
        self.skip_ws()
        if self.peek() != "/":
            raise self.error("expected a /regex/")
        self.pos += 1
        start = self.pos
        while self.peek() and self.peek() != "/":
            if self.peek() == "\\":
                self.pos += 1
            self.pos += 1
        body = self.text[start : self.pos]
        self.pos += 1
        flags = 0
        while self.peek() in ("i", "m", "s"):
            flags |= {"i": re.I, "m": re.M, "s": re.S}[self.peek()]
            self.pos += 1
        pattern = re.compile(body, flags)
        return lambda v, r: (True, pattern)

    def operand(self) -> _Operand:
        self.skip_ws()
        c = self.peek()
        if c in ("@", "$"):
            start = self.pos
            self.pos += 1
            depth = 0
            while self.pos < len(self.text):
                ch = self.text[self.pos]
                if ch in ("'", '"'):
                    self.quoted()
                    continue
                if ch == "[":
                    depth += 1
                elif ch == "]":
                    if depth == 0:
                        break
                    depth -= 1
                elif depth == 0 and (ch in " )!=<>&|~" or ch == ","):
                    break
                self.pos += 1
            text = self.text[start : self.pos]
            sub = compile_path("$" + text[1:])
            relative = c == "@"

            def op(v: Any, r: Any) -> tuple[bool, Any]:
                target = v if relative else r
                try:
                    return True, sub.evaluate(target)
                except PathNotFound:
                    return False, None

            return op
        if c in ("'", '"'):
            s = self.quoted()
            return lambda v, r: (True, s)
        if c == "[":
            start = self.pos
            depth = 0
            while self.pos < len(self.text):
                ch = self.text[self.pos]
                if ch == "[":
                    depth += 1
                elif ch == "]":
                    depth -= 1
                    if depth == 0:
                        self.pos += 1
                        break
                self.pos += 1
            raw = self.text[start : self.pos].replace("'", '"')
            try:
                lst = json.loads(raw)
            except ValueError:
                raise self.error("bad list literal") from None
            return lambda v, r: (True, lst)
        m = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null").match(self.text, self.pos)
        if not m:
            raise self.error("expected an operand")
        self.pos = m.end()
        lit = json.loads(m.group(0))
        return lambda v, r: (True, lit)


@functools.lru_cache(maxsize=4096)
def compile_path(text: str) -> JsonPath:
    """Parse a JSONPath (cached). Raises :class:`PathSyntaxError`."""
    if not isinstance(text, str):
        raise PathSyntaxError(f"invalid JSONPath {text!r}: not a string")
    return _Parser(text.strip()).parse()


# ------------------------------------------------------------------------------- ResultPath


def set_result_path(doc: Any, path: JsonPath, value: Any) -> Any:
    """Return a copy of ``doc`` with ``value`` written at the reference path ``path``.

    Missing objects along the way are created. Raises ``ValueError`` when the path cannot be
    applied (for instance writing a field into an array).
    """
    if not path.segments:
        return value
    return _set(doc, path.segments, value)


def _set(node: Any, segments: tuple[_Segment, ...], value: Any) -> Any:
    seg = segments[0]
    rest = segments[1:]
    if isinstance(seg, _Field):
        name = seg.names[0]
        base: dict[str, Any] = dict(node) if isinstance(node, Mapping) else {}
        if (
            node is not None
            and not isinstance(node, Mapping)
            and not isinstance(node, str | int | float | bool)
        ):
            raise ValueError(f"cannot set field {name!r} on an array")
        base[name] = _set(base.get(name), rest, value) if rest else value
        return base
    if isinstance(seg, _Index):
        if not isinstance(node, list):
            raise ValueError("cannot index into a non-array")
        idx = seg.indexes[0]
        arr = list(node)
        if idx < 0:
            idx += len(arr)
        if not 0 <= idx < len(arr):
            raise ValueError("array index out of bounds")
        arr[idx] = _set(arr[idx], rest, value) if rest else value
        return arr
    raise ValueError("ResultPath must be a reference path")
