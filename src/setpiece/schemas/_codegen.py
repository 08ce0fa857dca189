"""Code bindings: Python source for a JSON Schema — msgspec Structs, or pydantic models.

Each object schema with properties becomes a class (the root named after the event type,
nested ones after their property, ``$defs`` after their key); required properties are plain
fields, the others default to None. Types map as JSON Schema reads them: ``string`` str
(``date-time`` datetime), ``integer`` int, ``number`` float, ``boolean`` bool, ``null`` None,
arrays ``list[...]``, an object without properties ``dict[str, Any]``, ``enum``/``const``
``Literal[...]``, a list of types or ``anyOf``/``oneOf`` a union. A property whose name is not
a Python identifier keeps its JSON name (``msgspec.field(name=...)``, pydantic ``alias``).
"""

from __future__ import annotations

import keyword
import re
from typing import Any

__all__ = ["class_name", "generate"]

_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool",
           "null": "None"}


def class_name(text: str) -> str:
    """``order_placed`` -> ``OrderPlaced`` (a valid identifier)."""
    words = re.split(r"[^0-9A-Za-z]+", text)
    name = "".join(w[:1].upper() + w[1:] for w in words if w) or "Event"
    return f"T{name}" if name[0].isdigit() else name


class _Writer:
    def __init__(self, root: dict[str, Any], pydantic: bool) -> None:
        self.root = root
        self.pydantic = pydantic
        self.classes: dict[str, str] = {}  # name -> source, in dependency order
        self.refs: dict[str, str] = {}
        self.uses_any = self.uses_literal = self.uses_datetime = self.uses_field = False
        self.writing: set[str] = set()

    def type_of(self, schema: Any, hint: str) -> str:
        if schema is True or schema == {} or not isinstance(schema, dict):
            self.uses_any = True
            return "Any"
        if "$ref" in schema:
            return self._ref(schema["$ref"])
        if "const" in schema:
            self.uses_literal = True
            return f"Literal[{schema['const']!r}]"
        if "enum" in schema:
            self.uses_literal = True
            values = [v for v in schema["enum"] if v is not None]
            literal = f"Literal[{', '.join(repr(v) for v in values)}]"
            return f"{literal} | None" if None in schema["enum"] else literal
        for combiner in ("anyOf", "oneOf"):
            if combiner in schema:
                return self._union([self.type_of(s, f"{hint}_{i}")
                                    for i, s in enumerate(schema[combiner])])
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.type_of(schema["allOf"][0], hint)
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return self._union([self.type_of({**schema, "type": k}, hint) for k in kinds])
        if kinds == "array" or (kinds is None and "items" in schema):
            return f"list[{self.type_of(schema.get('items', True), hint + '_item')}]"
        if kinds == "object" or (kinds is None and "properties" in schema):
            if schema.get("properties"):
                return self.klass(schema, class_name(hint))
            self.uses_any = True
            return "dict[str, Any]"
        if kinds == "string" and schema.get("format") == "date-time":
            self.uses_datetime = True
            return "datetime"
        if kinds in _SIMPLE:
            return _SIMPLE[kinds]
        self.uses_any = True
        return "Any"

    def _union(self, parts: list[str]) -> str:
        out: list[str] = []
        for part in parts:
            for piece in part.split(" | "):
                if piece not in out:
                    out.append(piece)
        if "None" in out:  # None last, as people write it
            out = [p for p in out if p != "None"] + ["None"]
        return " | ".join(out)

    def _ref(self, ref: str) -> str:
        if ref in self.refs:
            return self.refs[ref]
        if ref == "#":
            return self.refs.setdefault(ref, f'"{self.root_name}"')
        target: Any = self.root
        for part in ref.lstrip("#").split("/")[1:]:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        name = class_name(ref.rsplit("/", 1)[-1])
        self.refs[ref] = f'"{name}"'  # while it is being written (recursion)
        made = self.type_of(target, name)
        self.refs[ref] = made
        return made

    root_name = "Event"

    def klass(self, schema: dict[str, Any], name: str) -> str:
        while name in self.classes or name in self.writing:
            name += "_"
        self.writing.add(name)  # nested classes are written (and listed) first
        required = set(schema.get("required", []))
        lines = []
        for prop, sub in schema.get("properties", {}).items():
            field = prop if prop.isidentifier() and not keyword.iskeyword(prop) else (
                re.sub(r"\W", "_", prop).strip("_") or "field")
            if keyword.iskeyword(field) or field[0].isdigit():
                field += "_"
            kind = self.type_of(sub, f"{name}_{field}")
            renamed = field != prop
            if prop in required:
                default = ""
                if renamed:
                    self.uses_field = True
                    default = (f" = Field(alias={prop!r})" if self.pydantic
                               else f" = msgspec.field(name={prop!r})")
            elif isinstance(sub, dict) and "default" in sub and _literal(sub["default"]):
                value = sub["default"]
                if value is None and not (kind.endswith("| None") or kind in ("None", "Any")):
                    kind = f"{kind} | None"
                default = f" = {value!r}"
                if renamed:
                    self.uses_field = True
                    default = (f" = Field({value!r}, alias={prop!r})" if self.pydantic
                               else f" = msgspec.field(default={value!r}, name={prop!r})")
            else:
                kind = kind if kind.endswith("| None") or kind in ("None", "Any") else (
                    f"{kind} | None")
                if renamed:
                    self.uses_field = True
                    default = (f" = Field(None, alias={prop!r})" if self.pydantic
                               else f" = msgspec.field(default=None, name={prop!r})")
                else:
                    default = " = None"
            lines.append(f"    {field}: {kind}{default}")
        base = "BaseModel" if self.pydantic else "msgspec.Struct, kw_only=True"
        doc = schema.get("description") or schema.get("title")
        body = ([f"    {_docstring(doc)}", ""] if doc else []) + (lines or ["    pass"])
        self.writing.discard(name)
        self.classes[name] = f"class {name}({base}):\n" + "\n".join(body)
        return name


def _literal(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _docstring(text: Any) -> str:
    words = " ".join(str(text).split())
    return repr(words) if '"' in words or "\\" in words else f'"""{words}"""'


def generate(schema: dict[str, Any], event_type: str, *, pydantic: bool = False) -> str:
    """Python source defining a class named after ``event_type`` for ``schema``."""
    writer = _Writer(schema, pydantic)
    writer.root_name = class_name(event_type)
    top = writer.type_of(schema, event_type)
    head = [f'"""Generated by `setpiece schema codegen` for event type {event_type!r}."""', "",
            "from __future__ import annotations", ""]
    if writer.uses_datetime:
        head.append("from datetime import datetime")
    typing_names = [n for n, used in (("Any", writer.uses_any),
                                      ("Literal", writer.uses_literal)) if used]
    if typing_names:
        head.append(f"from typing import {', '.join(typing_names)}")
    if len(head) > 4:
        head.append("")
    head.append("from pydantic import BaseModel" + (", Field" if writer.uses_field else "")
                if pydantic else "import msgspec")
    body = "\n\n\n".join(writer.classes.values())
    if top != writer.root_name and top not in writer.classes:
        body += ("\n\n\n" if body else "") + f"{writer.root_name} = {top}"
    return "\n".join(head) + "\n\n\n" + body + "\n"
