"""Parsing JSONPath text into a :class:`~setpiece.workflows._compiled_path.JsonPath`: names,
brackets, slices, deep scans, ``length()`` and filter expressions (``[?(...)]``, with their
comparison semantics)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from setpiece.workflows._compiled_path import (
    Deep,
    Field,
    Filter,
    Index,
    JsonPath,
    Length,
    PathNotFound,
    Segment,
    Slice,
    Wildcard,
)

__all__ = ["PathSyntaxError", "compile_path"]


class PathSyntaxError(ValueError):
    """A JSONPath expression cannot be parsed."""


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
        segments: list[Segment] = []
        while self.pos < len(t):
            segments.append(self.segment())
        definite = (
            all(isinstance(s, Field | Index | Length) for s in segments)
            and all(len(s.names) == 1 for s in segments if isinstance(s, Field))
            and all(len(s.indexes) == 1 for s in segments if isinstance(s, Index))
        )
        return JsonPath(t, root, tuple(segments), definite)

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.error("expected a property name")
        return self.text[start : self.pos]

    def segment(self) -> Segment:
        c = self.peek()
        if c == ".":
            if self.peek(1) == ".":
                self.pos += 2
                if self.peek() == "[":
                    inner = self.bracket()
                elif self.peek() == "*":
                    self.pos += 1
                    inner = Wildcard()
                else:
                    inner = Field((self.name(),))
                if isinstance(inner, Deep | Length):
                    raise self.error("unsupported deep scan")
                return Deep(inner)
            self.pos += 1
            if self.peek() == "*":
                self.pos += 1
                return Wildcard()
            if self.text.startswith("length()", self.pos) and self.pos + 8 == len(self.text):
                self.pos += 8
                return Length()
            return Field((self.name(),))
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

    def bracket(self) -> Segment:
        self.pos += 1  # [
        self.skip_ws()
        c = self.peek()
        seg: Segment
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
            seg = Field(tuple(names))
        elif c == "*":
            self.pos += 1
            seg = Wildcard()
        elif c == "?":
            self.pos += 1
            self.expect("(")
            start = self.pos
            parser = _FilterParser(self.text, self.pos)
            predicate = parser.parse_or()
            self.pos = parser.pos
            text = self.text[start : self.pos]
            self.expect(")")
            seg = Filter(predicate, text)
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
                seg = Slice(parts[0], parts[1], parts[2])
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
                seg = Index(tuple(idx))
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

