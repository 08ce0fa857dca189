"""A JSON Schema document read into typed nodes, the shape the compatibility rules compare.

A schema dict mixes keywords of several kinds; the rules compare like with like, so each
document is read into one of: an empty schema (``{}`` or ``true``), ``false``, a string, number,
boolean, null, object or array schema, an enum, a const, a ``not``, a combination (``allOf``,
``anyOf``, ``oneOf``), or a reference (resolved against the document's root). A schema whose
keywords span several of these (``{"type": "string", "enum": [...]}``) is the ``allOf`` of its
parts; a list of types is the ``anyOf`` of one schema per type. Draft-07 and 2020-12 spellings
are both read (``items`` as a list or ``prefixItems``; ``dependencies`` or
``dependentRequired``/``dependentSchemas``; ``unevaluated*`` where ``additional*`` is absent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "read_schema"]

_STRING_KEYS = frozenset({"minLength", "maxLength", "pattern", "format"})
_NUMBER_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                          "multipleOf"})
_OBJECT_KEYS = frozenset({"properties", "required", "additionalProperties", "patternProperties",
                          "dependencies", "dependentRequired", "dependentSchemas",
                          "minProperties", "maxProperties", "propertyNames",
                          "unevaluatedProperties"})
_ARRAY_KEYS = frozenset({"items", "prefixItems", "additionalItems", "minItems", "maxItems",
                         "uniqueItems", "contains", "minContains", "maxContains",
                         "unevaluatedItems"})
_BY_TYPE = {"string": _STRING_KEYS, "number": _NUMBER_KEYS, "integer": _NUMBER_KEYS,
            "object": _OBJECT_KEYS, "array": _ARRAY_KEYS, "boolean": frozenset(),
            "null": frozenset()}
_COMBINERS = ("allOf", "anyOf", "oneOf")


@dataclass(eq=False)
class Node:
    """One schema, of one ``kind``; ``raw`` is its source (identity of equal subschemas)."""

    kind: str  # empty false string number boolean null object array enum const not combined ref
    raw: Any
    keywords: dict[str, Any] = field(default_factory=dict)
    subs: list[Node] = field(default_factory=list)
    criterion: str = ""  # combined: allOf anyOf oneOf
    properties: dict[str, Node] = field(default_factory=dict)
    pattern_properties: dict[str, Node] = field(default_factory=dict)
    additional: Node | bool | None = None  # objects: additionalProperties; arrays: after prefix
    prefix: list[Node] = field(default_factory=list)
    dependent_schemas: dict[str, Node] = field(default_factory=dict)
    contains: Node | None = None
    target: Node | None = None  # ref: the schema it names (filled lazily)
    ref: str = ""
    key: str = ""  # canonical JSON of raw: equal subschemas collapse in a combination

    def resolved(self) -> Node:
        node: Node = self
        seen = 0
        while node.kind == "ref" and node.target is not None and seen < 64:
            node, seen = node.target, seen + 1
        return node


class _Reader:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Node] = {}

    def read(self, doc: Any, path: str) -> Node:
        if doc is True:
            return Node("empty", doc, key="true")
        if doc is False:
            return Node("false", doc, key="false")
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a schema is an object or a boolean, "
                             f"not {type(doc).__name__}")
        key = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
        parts: list[Node] = []
        if "$ref" in doc:
            ref = doc["$ref"]
            if not isinstance(ref, str):
                raise ValueError(f"{path}.$ref: must be a string")
            parts.append(self._ref(ref, path))
        types = doc.get("type")
        if isinstance(types, str):
            types = [types]
        if types is not None:
            if not isinstance(types, list) or not all(t in _BY_TYPE for t in types):
                raise ValueError(f"{path}.type: {doc['type']!r} is not a JSON Schema type "
                                 f"({', '.join(sorted(_BY_TYPE))})")
            typed = [self._typed(t, doc, path) for t in dict.fromkeys(types)]
            parts.append(typed[0] if len(typed) == 1 else
                         Node("combined", doc, subs=typed, criterion="anyOf", key=key + "#type"))
        else:
            for name, keys in (("string", _STRING_KEYS), ("number", _NUMBER_KEYS),
                               ("object", _OBJECT_KEYS), ("array", _ARRAY_KEYS)):
                if keys & doc.keys():
                    parts.append(self._typed(name, doc, path))
        if "enum" in doc:
            if not isinstance(doc["enum"], list):
                raise ValueError(f"{path}.enum: must be an array")
            parts.append(Node("enum", doc, keywords={"enum": doc["enum"]},
                              key=_canon({"enum": doc["enum"]})))
        if "const" in doc:
            parts.append(Node("const", doc, keywords={"const": doc["const"]},
                              key=_canon({"const": doc["const"]})))
        if "not" in doc:
            parts.append(Node("not", doc, subs=[self.read(doc["not"], f"{path}.not")],
                              key=_canon({"not": doc["not"]})))
        for criterion in _COMBINERS:
            if criterion in doc:
                subs = doc[criterion]
                if not isinstance(subs, list) or not subs:
                    raise ValueError(f"{path}.{criterion}: must be a non-empty array")
                read = [self.read(s, f"{path}.{criterion}[{i}]") for i, s in enumerate(subs)]
                parts.append(Node("combined", doc, criterion=criterion,
                                  key=_canon({criterion: subs}), subs=read))
        if not parts:
            return Node("empty", doc, key=key)
        if len(parts) == 1:
            parts[0].key = key
            return parts[0]
        return Node("combined", doc, subs=parts, criterion="allOf", key=key)

    def _ref(self, ref: str, path: str) -> Node:
        node = self.refs.get(ref)
        if node is None:
            node = self.refs[ref] = Node("ref", {"$ref": ref}, ref=ref, key=_canon({"$ref": ref}))
            node.target = self.read(self._pointer(ref, path), f"{path}.$ref({ref})")
        return node

    def _pointer(self, ref: str, path: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"{path}.$ref: {ref!r} names another document; only references "
                             "inside the schema (#/...) are supported")
        doc: Any = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(doc, dict) and part in doc:
                doc = doc[part]
            elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
                doc = doc[int(part)]
            else:
                raise ValueError(f"{path}.$ref: {ref!r} names nothing in the schema")
        return doc

    def _typed(self, kind: str, doc: dict[str, Any], path: str) -> Node:
        keys = _BY_TYPE[kind]
        if kind == "integer":
            node = Node("number", doc, keywords={"integer": True})
        else:
            node = Node(kind, doc)
        for name in keys & doc.keys():
            node.keywords[name] = doc[name]
        node.key = _canon({"type": kind, **node.keywords})
        if kind == "object":
            self._object(node, doc, path)
        elif kind == "array":
            self._array(node, doc, path)
        return node

    def _object(self, node: Node, doc: dict[str, Any], path: str) -> None:
        props = doc.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError(f"{path}.properties: must be an object")
        node.properties = {k: self.read(v, f"{path}.properties.{k}") for k, v in props.items()}
        patterns = doc.get("patternProperties", {})
        if not isinstance(patterns, dict):
            raise ValueError(f"{path}.patternProperties: must be an object")
        node.pattern_properties = {k: self.read(v, f"{path}.patternProperties.{k}")
                                   for k, v in patterns.items()}
        extra = doc.get("additionalProperties", doc.get("unevaluatedProperties"))
        node.additional = self._extra(extra, f"{path}.additionalProperties")
        required = doc.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"{path}.required: must be an array of strings")
        node.keywords["required"] = required
        arrays: dict[str, list[str]] = {}
        for kw in ("dependencies", "dependentRequired", "dependentSchemas"):
            deps = doc.get(kw, {})
            if not isinstance(deps, dict):
                raise ValueError(f"{path}.{kw}: must be an object")
            for name, dep in deps.items():
                if isinstance(dep, list):
                    arrays[name] = dep
                else:
                    node.dependent_schemas[name] = self.read(dep, f"{path}.{kw}.{name}")
        node.keywords["dependent_required"] = arrays

    def _array(self, node: Node, doc: dict[str, Any], path: str) -> None:
        items = doc.get("items")
        prefix = doc.get("prefixItems")
        if isinstance(items, list):  # draft-07 tuple form
            prefix, extra = items, doc.get("additionalItems", doc.get("unevaluatedItems"))
        elif prefix is not None:
            extra = items if items is not None else doc.get("unevaluatedItems")
        else:
            # without a tuple, the registry reads additionalItems as the schema of every item
            prefix = []
            extra = items if items is not None else doc.get("additionalItems",
                                                            doc.get("unevaluatedItems"))
        if not isinstance(prefix, list):
            raise ValueError(f"{path}.prefixItems: must be an array")
        node.prefix = [self.read(s, f"{path}.items[{i}]") for i, s in enumerate(prefix)]
        node.additional = self._extra(extra, f"{path}.items")
        if "contains" in doc:
            node.contains = self.read(doc["contains"], f"{path}.contains")

    def _extra(self, extra: Any, path: str) -> Node | bool | None:
        if extra is None or isinstance(extra, bool):
            return extra
        return self.read(extra, path)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def read_schema(doc: Any) -> Node:
    """Read a JSON Schema document (ValueError naming the path if it is not one)."""
    return _Reader(doc).read(doc, "$")
