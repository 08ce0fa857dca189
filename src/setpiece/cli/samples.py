"""``setpiece publish MODULE:STACK --example TYPE``: a sample event a handler of the stack accepts.

The event's type must be one that a handler names in its pattern (``{"type": ["TYPE"]}``). Its
data is built from the data model the handler's annotation declares — a msgspec Struct, a
dataclass, a TypedDict, a pydantic model — through the model's JSON schema: a minimal valid
instance (required fields, optional ones that have a default, the smallest values the
constraints allow, strings made to match their regular expression). The source comes from the
pattern when it names one. The result is then checked the way the runtime would: it must match
every such handler's pattern and decode into each handler's model; where it does not (a custom
validator, say), the caller gets a warning that names the handler and the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import re
import typing
import uuid
from typing import Any

import msgspec

from setpiece import patterns
from setpiece.cli._common import CliError
from setpiece.errors import PatternError
from setpiece.event import Event
from setpiece.service import Handler
from setpiece.stack import Stack

__all__ = ["Example", "example_event"]

_DEFAULT_SOURCE = "setpiece.cli"
_PLAIN = (inspect.Parameter.empty, Event, Any, object)


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """A sample event, and what did not fit (one line per handler that would refuse it)."""

    event: dict[str, Any]
    warnings: tuple[str, ...] = ()


def example_event(stack: Stack, event_type: str) -> Example:
    """A sample event of ``event_type`` for the handlers of ``stack`` that take it."""
    handlers = [h for h in _event_handlers(stack) if _takes(h, event_type)]
    if not handlers:
        declared = sorted({t for h in _event_handlers(stack)
                           for t in _literals(_pattern(h), "type")})
        known = ", ".join(declared) if declared else "none"
        raise CliError(f"--example {event_type!r}: no handler of stack {stack.name!r} declares "
                       f"that type (types its handlers declare: {known})")
    models = [(h, m) for h in handlers if (m := input_model(h.fn)) is not None]
    pattern = _pattern(handlers[0])
    sources = _literals(pattern, "source")
    doc: dict[str, Any] = {"type": event_type, "source": sources[0] if sources else _DEFAULT_SOURCE}
    subjects = _literals(pattern, "subject")
    if subjects:
        doc["subject"] = subjects[0]
    if models:
        doc["data"] = sample(json_schema(models[0][1]))
    else:
        doc["data"] = _pattern_data(pattern)
    return Example(doc, tuple(_refusals(handlers, doc)))


def _takes(handler: Handler, event_type: str) -> bool:
    """Whether the handler's pattern names the type: listed, or matched by a condition on it
    (``{"prefix": "order."}``, ``{"wildcard": ...}``). A pattern on other fields only does not
    count: it declares no type."""
    pattern = _pattern(handler)
    key = "type" if "type" in pattern else "detail-type"
    if key not in pattern:
        return False
    if event_type in _literals(pattern, key):
        return True
    try:
        return patterns.compile({key: pattern[key]}).matches({key: event_type})
    except PatternError:
        return False


def _event_handlers(stack: Stack) -> list[Handler]:
    return [h for s in stack.services.values() for h in s.handlers if h.kind == "event"]


def _pattern(handler: Handler) -> dict[str, Any]:
    pattern = handler.pattern
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except ValueError:
            return {}
    return dict(pattern) if isinstance(pattern, dict) else {}


def _literals(pattern: dict[str, Any], key: str) -> list[str]:
    """The exact string values a pattern lists for a top-level key (``detail-type`` too)."""
    values = pattern.get(key)
    if values is None and key == "type":
        values = pattern.get("detail-type")
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, str)]


def _pattern_data(pattern: dict[str, Any]) -> dict[str, Any]:
    """For a handler without a model: the exact values its pattern asks of the data."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            found = {k: walk(v) for k, v in node.items()}
            return {k: v for k, v in found.items() if v is not None}
        if isinstance(node, list):
            exact = [v for v in node if isinstance(v, str | int | float | bool)]
            return exact[0] if exact else None
        return None

    data = pattern.get("data", pattern.get("detail"))
    return walk(data) if isinstance(data, dict) else {}


def input_model(fn: Any) -> Any | None:
    """The type a handler's first parameter asks its event's data to be, if it names one."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params:
        return None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations: the service refused them already
        return None
    annotation = hints.get(params[0].name, inspect.Parameter.empty)
    if annotation in _PLAIN or getattr(annotation, "__name__", "") in ("Context", "SyncContext"):
        return None
    if annotation is dict or typing.get_origin(annotation) is dict:
        return None
    return annotation


def json_schema(model: Any) -> dict[str, Any]:
    """A JSON schema of a model: pydantic's own for pydantic models; for every type msgspec
    decodes, one made from ``msgspec.inspect`` (which knows formats that msgspec's JSON schema
    leaves out, such as ``date-time``)."""
    if isinstance(model, type) and hasattr(model, "model_json_schema"):
        schema: dict[str, Any] = model.model_json_schema()
        return schema
    try:
        info = msgspec.inspect.type_info(model)
    except TypeError as exc:
        name = getattr(model, "__name__", str(model))
        raise CliError(f"cannot describe {name} as a JSON schema: {exc}") from None
    return _schema_of(info, 0)


def _schema_of(t: Any, depth: int) -> dict[str, Any]:
    """A JSON schema for a ``msgspec.inspect`` type (inline, cut at a depth for recursion)."""
    mi = msgspec.inspect
    if depth > 8:
        return {}
    if isinstance(t, mi.StructType | mi.DataclassType | mi.TypedDictType | mi.NamedTupleType):
        properties, required = {}, []
        for field in t.fields:
            prop = _schema_of(field.type, depth + 1)
            if field.required:
                required.append(field.encode_name)
            elif field.default is not msgspec.NODEFAULT:
                prop["default"] = msgspec.to_builtins(field.default)
            elif field.default_factory is not msgspec.NODEFAULT:
                prop["default"] = msgspec.to_builtins(field.default_factory())
            properties[field.encode_name] = prop
        if isinstance(t, mi.NamedTupleType):
            return {"type": "array", "prefixItems": [_schema_of(f.type, depth + 1)
                                                     for f in t.fields]}
        return {"type": "object", "properties": properties, "required": required}
    if isinstance(t, mi.UnionType):
        return {"anyOf": [_schema_of(u, depth + 1) for u in t.types]}
    if isinstance(t, mi.LiteralType):
        return {"enum": list(t.values)}
    if isinstance(t, mi.EnumType):
        return {"enum": [member.value for member in t.cls]}
    if isinstance(t, mi.TupleType):
        return {"type": "array", "prefixItems": [_schema_of(u, depth + 1) for u in t.item_types]}
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _bounded({"type": "array", "items": _schema_of(t.item_type, depth + 1)},
                        t, "minItems", "maxItems")
    if isinstance(t, mi.DictType):
        return _bounded({"type": "object", "additionalProperties":
                         _schema_of(t.value_type, depth + 1)}, t, "minProperties",
                        "maxProperties")
    if isinstance(t, mi.IntType | mi.FloatType):
        schema = {"type": "integer" if isinstance(t, mi.IntType) else "number"}
        for attr, key in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"),
                          ("lt", "exclusiveMaximum"), ("multiple_of", "multipleOf")):
            if getattr(t, attr) is not None:
                schema[key] = getattr(t, attr)
        return schema
    if isinstance(t, mi.StrType):
        schema = _bounded({"type": "string"}, t, "minLength", "maxLength")
        if t.pattern is not None:
            schema["pattern"] = t.pattern
        return schema
    simple: dict[type, dict[str, Any]] = {
        mi.BoolType: {"type": "boolean"}, mi.NoneType: {"type": "null"},
        mi.DateTimeType: {"type": "string", "format": "date-time"},
        mi.DateType: {"type": "string", "format": "date"},
        mi.TimeType: {"type": "string", "format": "time"},
        mi.TimeDeltaType: {"type": "string", "format": "duration"},
        mi.UUIDType: {"type": "string", "format": "uuid"},
        mi.DecimalType: {"type": "string", "format": "decimal"},
        mi.BytesType: {"type": "string", "format": "base64"},
        mi.ByteArrayType: {"type": "string", "format": "base64"},
    }
    return dict(simple.get(type(t), {}))


def _bounded(schema: dict[str, Any], t: Any, low: str, high: str) -> dict[str, Any]:
    if t.min_length is not None:
        schema[low] = t.min_length
    if t.max_length is not None:
        schema[high] = t.max_length
    return schema


def _refusals(handlers: list[Handler], doc: dict[str, Any]) -> list[str]:
    event = Event.from_dict(doc)
    view = event.pattern_view()
    found = []
    for handler in handlers:
        if handler.compiled is not None and not handler.compiled.matches(view):
            found.append(f"{handler.qualname}: the example does not match its pattern "
                         f"{json.dumps(handler.pattern)}")
            continue
        try:
            handler.adapt(event)
        except Exception as exc:  # what the runtime would dead-letter
            found.append(f"{handler.qualname}: {exc}")
    return found


# -- a minimal valid instance of a JSON schema ------------------------------------------------


def sample(schema: dict[str, Any]) -> Any:
    """A small value that is valid for ``schema`` (with ``$defs`` resolved)."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _Sampler(defs).value(schema, "value")


class _Sampler:
    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 50:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self._defs.get(name, {}), **extra}
            seen += 1
        if "allOf" in schema and len(schema["allOf"]) == 1:
            extra = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**self._resolve(schema["allOf"][0]), **extra}
        return schema

    def value(self, schema: Any, name: str) -> Any:
        if not isinstance(schema, dict):
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(o) for o in schema[key]]
                chosen = [o for o in options if o.get("type") != "null"] or options
                return self.value(chosen[0], name)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None and "properties" in schema:
            kind = "object"
        maker = getattr(self, f"_{kind}", None)
        return maker(schema, name) if maker is not None else None

    def _null(self, schema: dict[str, Any], name: str) -> None:
        return None

    def _boolean(self, schema: dict[str, Any], name: str) -> bool:
        return True

    def _object(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        required = set(schema.get("required", ()))
        result = {}
        for key, prop in schema.get("properties", {}).items():
            if key in required:
                result[key] = self.value(prop, key)
            elif isinstance(prop, dict) and "default" in prop:
                result[key] = prop["default"]
        return result

    def _array(self, schema: dict[str, Any], name: str) -> list[Any]:
        prefix = schema.get("prefixItems")
        if prefix is not None:
            return [self.value(item, name) for item in prefix]
        count = max(int(schema.get("minItems", 0)), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [self.value(schema.get("items", {}), name) for _ in range(count)]

    def _integer(self, schema: dict[str, Any], name: str) -> int:
        return int(_number(schema, integer=True))

    def _number(self, schema: dict[str, Any], name: str) -> float | int:
        return _number(schema, integer=False)

    def _string(self, schema: dict[str, Any], name: str) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        pattern = schema.get("pattern")
        if pattern is not None:
            made = _from_regex(str(pattern), low, high)
            if made is not None:
                return made
        by_format = _FORMATS.get(str(schema.get("format")))
        if by_format is not None:
            return str(by_format())
        text = "example"
        if len(text) < low:
            text += "x" * (low - len(text))
        if high is not None:
            text = text[: int(high)]
        return text


def _number(schema: dict[str, Any], *, integer: bool) -> float | int:
    """1, moved into the range the schema allows, on its multiple."""
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    high = schema.get("maximum")
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 1
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    step = schema.get("multipleOf")
    if step:
        value = -(-value // step) * step  # the first multiple at or above it
        if high is not None and value > high:
            value -= step
    return int(value) if integer or float(value).is_integer() else value


_FORMATS: dict[str, Any] = {
    "date": lambda: dt.date.today().isoformat(),
    "date-time": lambda: dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    .replace("+00:00", "Z"),
    "time": lambda: "12:00:00",
    "duration": lambda: "P1D",
    "uuid": lambda: str(uuid.uuid4()),
    "email": lambda: "user@example.com",
    "idn-email": lambda: "user@example.com",
    "uri": lambda: "https://example.com/",
    "url": lambda: "https://example.com/",
    "hostname": lambda: "example.com",
    "ipv4": lambda: "192.0.2.1",
    "ipv6": lambda: "2001:db8::1",
    "decimal": lambda: "1",
    "base64": lambda: "",
}


# -- a string that matches a regular expression -------------------------------------------------

_CANDIDATES = "a0A-_. xz9Z@/"


def _from_regex(pattern: str, low: int, high: Any) -> str | None:
    """The shortest string the common constructs of ``pattern`` make, if it matches (checked)."""
    try:
        from re import _parser  # type: ignore[attr-defined]  # CPython's own regex parser

        tree = _parser.parse(pattern)
        made = _Regex().emit(tree)
    except Exception:  # a construct this does not follow (lookbehind, ...): no sample
        return None
    if len(made) < low:  # pad inside the pattern when it allows: try the longest repeat
        return None if not re.search(pattern, made) else _pad(pattern, made, low)
    if high is not None and len(made) > int(high):
        return None
    return made if re.search(pattern, made) else None


def _pad(pattern: str, made: str, low: int) -> str | None:
    for char in _CANDIDATES:
        for at in range(len(made), -1, -1):
            longer = made[:at] + char * (low - len(made)) + made[at:]
            if re.search(pattern, longer):
                return longer
    return None


class _Regex:
    def __init__(self) -> None:
        self._groups: dict[int, str] = {}

    def emit(self, items: Any) -> str:
        return "".join(self._one(str(op), av) for op, av in items)

    def _one(self, op: str, av: Any) -> str:
        if op == "LITERAL":
            return chr(av)
        if op == "NOT_LITERAL":
            return "a" if av != ord("a") else "b"
        if op == "ANY":
            return "a"
        if op == "IN":
            return _in(av)
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, sub = av
            return str(self.emit(sub)) * int(low)
        if op == "SUBPATTERN":
            group, sub = av[0], av[-1]
            text = self.emit(sub)
            if group is not None:
                self._groups[group] = text
            return text
        if op == "ATOMIC_GROUP":
            return self.emit(av)
        if op == "BRANCH":
            return self.emit(av[1][0])
        if op == "GROUPREF":
            return self._groups.get(av, "")
        if op in ("AT", "ASSERT", "ASSERT_NOT"):
            return ""  # anchors; lookarounds are left to the final check
        raise ValueError(f"regex construct {op} not followed")


def _in(items: list[tuple[Any, Any]]) -> str:
    negated = bool(items) and str(items[0][0]) == "NEGATE"
    members = items[1:] if negated else items
    for char in _CANDIDATES if negated else "":
        if not any(_member(char, str(op), av) for op, av in members):
            return char
    if negated:
        raise ValueError("no candidate outside the set")
    op, av = str(members[0][0]), members[0][1]
    if op == "LITERAL":
        return chr(av)
    if op == "RANGE":
        return chr(av[0])
    if op == "CATEGORY":
        return {"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "a",
                "CATEGORY_NOT_DIGIT": "a", "CATEGORY_NOT_SPACE": "a",
                "CATEGORY_NOT_WORD": "-"}.get(str(av), "a")
    raise ValueError(f"set member {op} not followed")


def _member(char: str, op: str, av: Any) -> bool:
    if op == "LITERAL":
        return bool(ord(char) == av)
    if op == "RANGE":
        return bool(av[0] <= ord(char) <= av[1])
    if op == "CATEGORY":
        tests = {"CATEGORY_DIGIT": char.isdigit(), "CATEGORY_SPACE": char.isspace(),
                 "CATEGORY_WORD": char.isalnum() or char == "_"}
        name = str(av)
        if name.startswith("CATEGORY_NOT_"):
            return not tests.get(name.replace("NOT_", ""), False)
        return tests.get(name, False)
    return False
