"""Intrinsic functions (``States.Format(...)`` and friends) for JSONPath states.

:func:`parse` turns the text into a small AST (calls, string/number/boolean/null literals,
paths) once; :func:`evaluate` runs it, resolving paths through a callback so that the caller
decides what ``$``, ``$$`` and ``$var`` mean.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from setpiece.workflows._errors import INTRINSIC_FAILURE, StatesError
from setpiece.workflows._limits import DEFAULT_LIMITS, json_size_over
from setpiece.workflows._paths import JsonPath, compile_path

__all__ = ["Call", "IntrinsicSyntaxError", "evaluate", "is_intrinsic", "parse"]


class IntrinsicSyntaxError(ValueError):
    """The text of an intrinsic function call cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    raw: str | None = None  # string literals keep their escapes for States.Format


@dataclass(frozen=True, slots=True)
class PathArg:
    path: JsonPath


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Literal | PathArg | Call, ...]


_Arg = Literal | PathArg | Call

FUNCTIONS = frozenset(
    {
        "States.Format",
        "States.StringToJson",
        "States.JsonToString",
        "States.Array",
        "States.ArrayPartition",
        "States.ArrayContains",
        "States.ArrayRange",
        "States.ArrayGetItem",
        "States.ArrayLength",
        "States.ArrayUnique",
        "States.Base64Encode",
        "States.Base64Decode",
        "States.Hash",
        "States.JsonMerge",
        "States.MathRandom",
        "States.MathAdd",
        "States.StringSplit",
        "States.UUID",
    }
)


def is_intrinsic(text: str) -> bool:
    """Does ``text`` look like an intrinsic function call (``States.Name(``)?"""
    t = text.lstrip()
    return t.startswith("States.") and "(" in t


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(
            f"invalid intrinsic function {self.text!r}: {message} at position {self.pos}"
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def ws(self) -> None:
        while self.peek() in (" ", "\t", "\n", "\r"):
            self.pos += 1

    def parse(self) -> Call:
        self.ws()
        call = self.call()
        self.ws()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the call")
        return call

    def call(self) -> Call:
        start = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() in "._"):
            self.pos += 1
        name = self.text[start : self.pos]
        if name not in FUNCTIONS:
            raise self.error(f"unknown function {name!r}")
        self.ws()
        if self.peek() != "(":
            raise self.error("expected '('")
        self.pos += 1
        args: list[_Arg] = []
        self.ws()
        if self.peek() == ")":
            self.pos += 1
            return Call(name, ())
        while True:
            self.ws()
            args.append(self.arg())
            self.ws()
            c = self.peek()
            self.pos += 1
            if c == ")":
                return Call(name, tuple(args))
            if c != ",":
                raise self.error("expected ',' or ')'")

    def arg(self) -> _Arg:
        c = self.peek()
        if c == "'":
            return self.string()
        if c == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call()
        start = self.pos
        while self.peek() and self.peek() not in ",) \t\n":
            self.pos += 1
        token = self.text[start : self.pos]
        if token in ("true", "false", "null"):
            return Literal(json.loads(token))
        try:
            num = json.loads(token)
        except ValueError:
            raise self.error(f"unexpected argument {token!r}") from None
        if not isinstance(num, int | float) or isinstance(num, bool):
            raise self.error(f"unexpected argument {token!r}")
        return Literal(num)

    def string(self) -> Literal:
        self.pos += 1
        out: list[str] = []
        raw: list[str] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.error("unterminated string literal")
            self.pos += 1
            if c == "\\":
                nxt = self.peek()
                if nxt == "":
                    raise self.error("dangling escape")
                self.pos += 1
                out.append(nxt)
                raw.append("\\" + nxt)
                continue
            if c == "'":
                return Literal("".join(out), "".join(raw))
            out.append(c)
            raw.append(c)

    def path(self) -> PathArg:
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in ("'", '"') and depth > 0:
                quote = c
                self.pos += 1
                while self.pos < len(self.text) and self.text[self.pos] != quote:
                    if self.text[self.pos] == "\\":
                        self.pos += 1
                    self.pos += 1
            elif c in "[(":
                depth += 1
            elif c in "])":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        try:
            return PathArg(compile_path(text))
        except ValueError as e:
            raise self.error(str(e)) from None


@functools.lru_cache(maxsize=2048)
def parse(text: str) -> Call:
    """Parse an intrinsic function call (cached). Raises :class:`IntrinsicSyntaxError`."""
    return _Parser(text).parse()


Resolver = Callable[[JsonPath], Any]


def evaluate(call: Call, resolve: Resolver, max_size: int = DEFAULT_LIMITS.max_value_size) -> Any:
    """Evaluate a parsed call; ``resolve`` looks a path argument up. Errors are
    ``StatesError(States.IntrinsicFailure, ...)``.

    No call builds a value larger than ``max_size`` (characters of a string, or of an array's
    JSON): sizes are checked before the value is built, or while it is.
    """
    args = [_value(a, resolve, max_size) for a in call.args]
    fn = _IMPL[call.name]
    try:
        return fn(call, args, max_size)
    except StatesError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
        raise _fail(call, str(e)) from None


def _value(arg: _Arg, resolve: Resolver, max_size: int) -> Any:
    if isinstance(arg, Literal):
        return arg.value
    if isinstance(arg, PathArg):
        return resolve(arg.path)
    return evaluate(arg, resolve, max_size)


def _too_large(call: Call, cap: int) -> StatesError:
    return _fail(call, f"the result would be longer than {cap} characters "
                       "(WorkflowLimits.max_value_size)")


def _bounded_json(call: Call, value: Any, cap: int) -> str:
    """``json_text(value)``, refused before encoding when it would pass ``cap``."""
    if json_size_over(value, cap):
        raise _too_large(call, cap)
    text = json_text(value)
    if len(text) > cap:
        raise _too_large(call, cap)
    return text


def _fail(call: Call, message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, f"Invalid arguments in {call.name}: {message}")


def _nargs(call: Call, args: list[Any], *counts: int) -> None:
    if len(args) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise _fail(call, f"expected {want} arguments, got {len(args)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _want(call: Call, v: Any, kind: str) -> None:
    ok = {
        "string": isinstance(v, str),
        "array": isinstance(v, list),
        "object": isinstance(v, dict),
        "number": _is_number(v),
        "integer": _is_number(v) and float(v).is_integer(),
        "boolean": isinstance(v, bool),
    }[kind]
    if not ok:
        raise _fail(call, f"expected {kind} but got {json_text(v)}")


def json_text(value: Any) -> str:
    """Compact JSON, as Step Functions prints values (no spaces, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str:
    """A key for deep equality that keeps JSON types apart (``1 != true``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def java_string(value: Any) -> str:
    """How Step Functions renders a value inside ``States.Format``: Java ``toString``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_string(v)}" for k, v in value.items()) + "}"
    return str(value)


def _java_double(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x.is_integer() and abs(x) < 1e7:
        return f"{int(x)}.0"
    return repr(x)


def _format(call: Call, args: list[Any], cap: int) -> str:
    if not args:
        raise _fail(call, "expected at least 1 argument")
    first = call.args[0]
    template = first.raw if isinstance(first, Literal) and first.raw is not None else args[0]
    _want(call, template, "string")
    values = args[1:]
    out: list[str] = []
    size = 0
    i = 0
    used = 0
    while i < len(template):
        c = template[i]
        if c == "\\" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
            continue
        if c == "{" and template.startswith("{}", i):
            if used >= len(values):
                raise _fail(call, "more placeholders than arguments")
            value = values[used]
            if not isinstance(value, str) and json_size_over(value, cap - size):
                raise _too_large(call, cap)
            piece = java_string(value)
            size += len(piece)
            if size > cap:
                raise _too_large(call, cap)
            out.append(piece)
            used += 1
            i += 2
            continue
        out.append(c)
        i += 1
    if used != len(values):
        raise _fail(call, "more arguments than placeholders")
    return "".join(out)


def _string_to_json(call: Call, args: list[Any], cap: int) -> Any:
    _nargs(call, args, 1)
    _want(call, args[0], "string")
    text = args[0]
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise _fail(call, f"the string is not valid JSON: {e}") from None


def _json_to_string(call: Call, args: list[Any], cap: int) -> str:
    _nargs(call, args, 1)
    return _bounded_json(call, args[0], cap)


def _array(call: Call, args: list[Any], cap: int) -> list[Any]:
    if json_size_over(args, cap):
        raise _too_large(call, cap)
    return list(args)


def _array_partition(call: Call, args: list[Any], cap: int) -> list[Any]:
    _nargs(call, args, 2)
    arr, size = args
    _want(call, arr, "array")
    _want(call, size, "integer")
    size = int(size)
    if size <= 0:
        raise _fail(call, "the chunk size must be greater than 0")
    return [arr[i : i + size] for i in range(0, len(arr), size)]


def _array_contains(call: Call, args: list[Any], cap: int) -> bool:
    _nargs(call, args, 2)
    arr, look = args
    _want(call, arr, "array")
    key = canonical(look)
    return any(canonical(v) == key for v in arr)


def _array_range(call: Call, args: list[Any], cap: int) -> list[int]:
    _nargs(call, args, 3)
    for a in args:
        _want(call, a, "integer")
    start, end, step = (int(a) for a in args)
    if step == 0:
        raise _fail(call, "the step cannot be 0")
    if (end - start) // step + 1 > 1000:  # counted before anything is built
        raise _fail(call, "the range would have more than 1000 items")
    return list(range(start, end + (1 if step > 0 else -1), step))


def _array_get_item(call: Call, args: list[Any], cap: int) -> Any:
    _nargs(call, args, 2)
    arr, idx = args
    _want(call, arr, "array")
    _want(call, idx, "integer")
    i = int(idx)
    if i < 0:
        raise _fail(call, "the index cannot be negative")
    return arr[i] if i < len(arr) else None


def _array_length(call: Call, args: list[Any], cap: int) -> int:
    _nargs(call, args, 1)
    _want(call, args[0], "array")
    return len(args[0])


def _array_unique(call: Call, args: list[Any], cap: int) -> list[Any]:
    _nargs(call, args, 1)
    _want(call, args[0], "array")
    seen: set[str] = set()
    out = []
    for v in args[0]:
        k = canonical(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _b64encode(call: Call, args: list[Any], cap: int) -> str:
    _nargs(call, args, 1)
    _want(call, args[0], "string")
    if len(args[0]) > 10000:
        raise _fail(call, "the input is longer than 10000 characters")
    return base64.b64encode(args[0].encode()).decode("ascii")


def _b64decode(call: Call, args: list[Any], cap: int) -> str:
    _nargs(call, args, 1)
    _want(call, args[0], "string")
    if len(args[0]) > 10000:
        raise _fail(call, "the input is longer than 10000 characters")
    try:
        return base64.b64decode(args[0], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise _fail(call, f"not valid base64: {e}") from None


_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _hash(call: Call, args: list[Any], cap: int) -> str:
    _nargs(call, args, 2)
    data, algo = args
    _want(call, algo, "string")
    if algo not in _HASHES:
        raise _fail(call, f"unsupported algorithm {algo!r} (use one of {', '.join(_HASHES)})")
    text = data if isinstance(data, str) else _bounded_json(call, data, cap)
    return hashlib.new(_HASHES[algo], text.encode()).hexdigest()


def _json_merge(call: Call, args: list[Any], cap: int) -> dict[str, Any]:
    _nargs(call, args, 3)
    a, b, deep = args
    _want(call, a, "object")
    _want(call, b, "object")
    _want(call, deep, "boolean")
    return _deep_merge(a, b) if deep else {**a, **b}


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _math_random(call: Call, args: list[Any], cap: int) -> int:
    _nargs(call, args, 2, 3)
    for a in args:
        _want(call, a, "integer")
    start, end = int(args[0]), int(args[1])
    if end <= start:
        raise _fail(call, "the end must be greater than the start")
    rng = random.Random(int(args[2])) if len(args) == 3 else random
    return rng.randrange(start, end)


def _java_round(x: int | float) -> int:
    return math.floor(x + 0.5) if isinstance(x, float) else int(x)


def _math_add(call: Call, args: list[Any], cap: int) -> int:
    _nargs(call, args, 2)
    for a in args:
        _want(call, a, "number")
    return _java_round(args[0]) + _java_round(args[1])


def _string_split(call: Call, args: list[Any], cap: int) -> list[str]:
    _nargs(call, args, 2)
    text, delims = args
    _want(call, text, "string")
    _want(call, delims, "string")
    pieces: list[str] = []
    cur: list[str] = []
    for ch in text:
        if ch in delims:
            if cur:
                pieces.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        pieces.append("".join(cur))
    return pieces


def _uuid(call: Call, args: list[Any], cap: int) -> str:
    _nargs(call, args, 0)
    return str(uuid.uuid4())


_IMPL: dict[str, Callable[[Call, list[Any], int], Any]] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": _array,
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": _array_contains,
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": _array_length,
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _b64encode,
    "States.Base64Decode": _b64decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": _uuid,
}
