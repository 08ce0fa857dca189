"""Validating an event's data against its schema, compiled once per schema.

A ``Struct`` or dataclass schema is checked by msgspec's own decoding (``msgspec.convert``), a
pydantic model by pydantic's, and a JSON Schema document by jsonschema-rs' compiled validator
(draft 2020-12 or draft-07). Each failure becomes one :class:`~setpiece.errors.SchemaError`
naming the event type, the JSON path of the offending value and the rule it broke.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import msgspec

from setpiece.errors import ConfigError, SchemaError
from setpiece.schemas.schema import Schema, is_pydantic, is_struct

__all__ = ["Validator", "compile_validator"]

#: data -> None, or raises SchemaError
Validator = Callable[[Any], None]

_MSGSPEC_AT = re.compile(r"^(.*?)(?: - at `(\$[^`]*)`)?$", re.S)
_DETAIL = 240  # characters of a failure's description kept in the message


def compile_validator(schema: Schema) -> Validator:
    """The validator of ``schema`` (ConfigError if it needs a library that is not installed)."""
    model = schema.model
    if model is not None and (is_struct(model) or dataclasses.is_dataclass(model)):
        return _msgspec_validator(schema, model)
    if model is not None and is_pydantic(model):
        return _pydantic_validator(schema, model)
    return _jsonschema_validator(schema)


def _fail(schema: Schema, path: str, rule: str, detail: str) -> SchemaError:
    if len(detail) > _DETAIL:
        detail = detail[:_DETAIL] + "…"
    return SchemaError(
        f"event {schema.type!r} does not fit its schema (version {schema.version}) at {path}: "
        f"{detail} (rule: {rule})",
        event_type=schema.type, path=path, rule=rule,
    )


def _msgspec_validator(schema: Schema, model: Any) -> Validator:
    convert = msgspec.convert

    def validate(data: Any) -> None:
        try:
            convert(data, model)
        except msgspec.ValidationError as exc:
            match = _MSGSPEC_AT.match(str(exc))
            detail, path = (match.group(1), match.group(2) or "$") if match else (str(exc), "$")
            raise _fail(schema, path, _msgspec_rule(detail), detail) from None

    return validate


def _msgspec_rule(detail: str) -> str:
    lowered = detail.lower()
    for word, rule in (("missing required", "required"), ("expected `", "type"),
                       ("invalid enum", "enum"), ("unknown field", "additionalProperties"),
                       (">=", "minimum"), ("<=", "maximum"), ("length", "length"),
                       ("match regex", "pattern")):
        if word in lowered:
            return rule
    return "type"


def _pydantic_validator(schema: Schema, model: Any) -> Validator:
    validate_python = model.__pydantic_validator__.validate_python

    def validate(data: Any) -> None:
        try:
            validate_python(data)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            errors = getattr(exc, "errors", None)
            first = errors()[0] if callable(errors) and errors() else {}
            path = _path(first.get("loc", ()))
            raise _fail(schema, path, str(first.get("type", "type")),
                        str(first.get("msg", exc))) from None

    return validate


def _jsonschema_validator(schema: Schema) -> Validator:
    try:
        import jsonschema_rs
    except ImportError:
        raise ConfigError(
            f"schema {schema.type!r} is a JSON Schema document: validating it needs "
            "jsonschema-rs (pip install 'setpiece[schemas]')"
        ) from None
    compiled = jsonschema_rs.validator_for(schema.document)
    is_valid = compiled.is_valid

    def validate(data: Any) -> None:
        if is_valid(data):
            return
        error = next(iter(compiled.iter_errors(data)))
        rule = str(error.schema_path[-1]) if error.schema_path else "schema"
        raise _fail(schema, _path(error.instance_path), rule, str(error.message))

    return validate


def _path(parts: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
