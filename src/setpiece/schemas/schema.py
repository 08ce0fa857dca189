"""Declaring an event type's schema: plain data, checked when it is made.

::

    Schema("order_placed", OrderPlaced)                      # a msgspec Struct or a dataclass
    Schema("order_placed", OrderPlacedModel)                 # a pydantic model
    Schema("order_paid", {"type": "object", ...}, compatibility="FULL")   # JSON Schema 2020-12
    Schema("order_placed", OrderPlacedV2, version=2)         # the next version of a type

Each becomes a JSON Schema (draft 2020-12) document, :attr:`Schema.document`; a Struct,
dataclass or pydantic model is also kept as :attr:`Schema.model`, and validation uses it
(msgspec's or pydantic's own decoding) rather than the document.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from setpiece.errors import ConfigError
from setpiece.schemas._compat import MODES
from setpiece.schemas._model import read_schema

__all__ = ["DRAFT_2020_12", "Schema"]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
_DRAFTS = (DRAFT_2020_12, DRAFT_2020_12 + "#", "http://json-schema.org/draft-07/schema#",
           "http://json-schema.org/draft-07/schema")


class Schema:
    """The schema of one version of one event type.

    ``model``: a msgspec ``Struct``, a dataclass, a pydantic model, or a JSON Schema document (a
    dict, draft 2020-12 or draft-07). ``version``: a positive integer, one per type and
    version. ``compatibility``: how a type's next version must relate to this one —
    ``BACKWARD`` (the default: consumers on the new schema read old events), ``FORWARD``,
    ``FULL``, their ``_TRANSITIVE`` forms (checked against every earlier version, not just the
    latest) or ``NONE``; the meanings of the Confluent Schema Registry.
    """

    __slots__ = ("compatibility", "description", "document", "model", "type", "version")

    def __init__(
        self,
        type: str,
        model: Any,
        *,
        version: int = 1,
        compatibility: str = "BACKWARD",
        description: str | None = None,
    ) -> None:
        where = f"Schema {type!r}"
        if not isinstance(type, str) or not type or len(type) > 256:
            raise ConfigError(f"Schema: the event type must be a non-empty string, got {type!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"{where}: version must be a positive integer, got {version!r}")
        mode = compatibility.upper() if isinstance(compatibility, str) else compatibility
        if mode not in MODES:
            raise ConfigError(f"{where}: compatibility {compatibility!r} is not one of "
                              f"{', '.join(MODES)}")
        self.type = type
        self.version = version
        self.compatibility: str = mode
        self.description = description
        self.model: Any = None if isinstance(model, Mapping) else model
        self.document: dict[str, Any] = to_json_schema(model, f"{where} v{version}")

    def __repr__(self) -> str:
        what = getattr(self.model, "__name__", None) or "JSON Schema"
        return f"Schema({self.type!r}, {what}, version={self.version})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Schema) and (self.type, self.version, self.compatibility,
                self.document) == (other.type, other.version, other.compatibility,
                                   other.document))

    def __hash__(self) -> int:
        return hash((self.type, self.version))


def is_pydantic(model: Any) -> bool:
    return isinstance(model, type) and hasattr(model, "model_json_schema")


def is_struct(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, msgspec.Struct)


def to_json_schema(model: Any, where: str) -> dict[str, Any]:
    """The JSON Schema document of ``model`` (ConfigError naming what cannot be turned)."""
    if isinstance(model, Mapping):
        doc = dict(model)
        draft = doc.get("$schema")
        if draft is not None and draft not in _DRAFTS:
            raise ConfigError(f"{where}: $schema {draft!r} is not draft 2020-12 or draft-07")
    elif is_pydantic(model):
        try:
            doc = _inline_root(model.model_json_schema())
        except Exception as exc:  # pydantic raises its own error types
            raise ConfigError(f"{where}: the pydantic model {model.__name__} cannot be turned "
                              f"into a JSON Schema ({exc})") from None
    elif isinstance(model, type) and (is_struct(model) or dataclasses.is_dataclass(model)):
        try:
            doc = _inline_root(msgspec.json.schema(model))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {model.__name__} cannot be turned into a JSON Schema "
                              f"({exc})") from None
    else:
        raise ConfigError(f"{where}: {model!r} is not a msgspec Struct, a dataclass, a pydantic "
                          "model or a JSON Schema document (a dict)")
    doc.setdefault("$schema", DRAFT_2020_12)
    try:
        read_schema(doc)
        msgspec.json.encode(doc)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a valid JSON Schema: {exc}") from None
    _check_meta(doc, where)
    return doc


def _inline_root(doc: dict[str, Any]) -> dict[str, Any]:
    """``{"$ref": "#/$defs/Order", "$defs": {...}}`` as the Order schema itself (with $defs)."""
    ref = doc.get("$ref")
    defs = doc.get("$defs", {})
    if not isinstance(ref, str) or not ref.startswith("#/$defs/") or len(doc) != 2:
        return dict(doc)
    name = ref[len("#/$defs/"):]
    root = dict(defs[name])
    rest = {k: v for k, v in defs.items() if k != name or _mentions(defs, ref)}
    if rest:
        root["$defs"] = rest
    return root


def _mentions(doc: Any, ref: str) -> bool:
    if isinstance(doc, dict):
        return doc.get("$ref") == ref or any(_mentions(v, ref) for v in doc.values())
    if isinstance(doc, list):
        return any(_mentions(v, ref) for v in doc)
    return False


def _check_meta(doc: dict[str, Any], where: str) -> None:
    """Check ``doc`` against its draft's meta-schema when jsonschema-rs is installed."""
    try:
        import jsonschema_rs
    except ImportError:  # checked again, with a pip hint, when a validator is compiled
        return
    try:
        jsonschema_rs.meta.validate(doc)
    except jsonschema_rs.ValidationError as exc:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.instance_path)
        raise ConfigError(f"{where}: not a valid JSON Schema at ${path}: "
                          f"{str(exc.message)[:200]}") from None
    except Exception as exc:  # a $schema jsonschema-rs does not know
        raise ConfigError(f"{where}: not a valid JSON Schema: {exc}") from None


def versions_by_type(schemas: Any) -> dict[str, tuple[Schema, ...]]:
    """A stack's schemas by event type, oldest version first, each version checked against the
    ones before it under its own compatibility mode (ConfigError naming the change)."""
    from setpiece.schemas._compat import breaking_changes

    by_type: dict[str, list[Schema]] = {}
    for schema in schemas:
        if not isinstance(schema, Schema):
            raise ConfigError(f"Stack schemas: {schema!r} is not a setpiece.schemas.Schema")
        same = by_type.setdefault(schema.type, [])
        if any(s.version == schema.version for s in same):
            raise ConfigError(f"the stack declares version {schema.version} of schema "
                              f"{schema.type!r} twice")
        same.append(schema)
    out: dict[str, tuple[Schema, ...]] = {}
    for name, found in by_type.items():
        found.sort(key=lambda s: s.version)
        for index, schema in enumerate(found[1:], start=1):
            earlier = found[:index] if schema.compatibility.endswith("_TRANSITIVE") else (
                found[index - 1:index])
            for before in earlier:
                broken = breaking_changes(before.document, schema.document, schema.compatibility)
                if broken:
                    raise ConfigError(
                        f"schema {name!r} version {schema.version} is not "
                        f"{schema.compatibility} compatible with version {before.version}: "
                        f"{'; '.join(str(c) for c in broken[:3])}")
        out[name] = tuple(found)
    return out
