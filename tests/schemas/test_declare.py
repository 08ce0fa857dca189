"""Declaring schemas: from a Struct, dataclass, pydantic model or JSON Schema; versions; modes."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from setpiece import Stack
from setpiece.errors import ConfigError
from setpiece.schemas import Schema
from setpiece.schemas.schema import DRAFT_2020_12


class Line(msgspec.Struct):
    sku: str
    qty: int = 1


class Order(msgspec.Struct):
    id: str
    lines: list[Line]


@dataclasses.dataclass
class Refund:
    id: str
    amount: float


def test_a_struct_becomes_a_2020_12_document_with_its_definitions() -> None:
    doc = Schema("order_placed", Order).document
    assert doc["$schema"] == DRAFT_2020_12 and doc["type"] == "object"
    assert doc["required"] == ["id", "lines"]
    assert doc["properties"]["lines"]["items"] == {"$ref": "#/$defs/Line"}
    assert doc["$defs"]["Line"]["properties"]["qty"] == {"type": "integer", "default": 1}


def test_a_dataclass_a_pydantic_model_and_a_dict_are_schemas() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Shipped(pydantic.BaseModel):
        id: str

    assert Schema("r", Refund).document["properties"]["amount"] == {"type": "number"}
    assert Schema("s", Shipped).document["required"] == ["id"]
    paid = Schema("p", {"type": "object"}, compatibility="full", version=3)
    assert (paid.version, paid.compatibility, paid.model) == (3, "FULL", None)
    assert paid.document == {"type": "object", "$schema": DRAFT_2020_12}


class Opaque:
    pass


class HasOpaque(msgspec.Struct):
    thing: Opaque


@pytest.mark.parametrize(("model", "words"), [
    ({"type": "strng"}, "not a valid JSON Schema: $.type: 'strng' is not a JSON Schema type"),
    ({"minLength": "x"}, "not a valid JSON Schema at $.minLength"),
    ({"$schema": "http://json-schema.org/draft-03/schema#"}, "is not draft 2020-12"),
    (HasOpaque, "HasOpaque cannot be turned into a JSON Schema"),
    (int, "is not a msgspec Struct, a dataclass, a pydantic model or a JSON Schema"),
])
def test_what_cannot_be_a_schema_is_a_clear_error(model: Any, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        Schema("t", model)
    assert words in str(info.value) and "Schema 't' v1" in str(info.value)


@pytest.mark.parametrize(("options", "words"), [
    ({"version": 0}, "version must be a positive integer"),
    ({"compatibility": "SIDEWAYS"}, "compatibility 'SIDEWAYS' is not one of"),
])
def test_bad_options_are_refused(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Schema("t", Order, **options)


def test_the_stack_keeps_versions_per_type_oldest_first() -> None:
    v2 = {"type": "object", "properties": {"id": {"type": "string"},
          "note": {"type": "string"}}}
    v1 = {"type": "object", "properties": {"id": {"type": "string"}}}
    stack = Stack("s", schemas=[Schema("t", v2, version=2, compatibility="FORWARD"),
                                Schema("t", v1), Schema("u", Order)])
    assert [s.version for s in stack.schemas["t"]] == [1, 2]
    with pytest.raises(ConfigError, match="version 1 of schema 't' twice"):
        Stack("s", schemas=[Schema("t", v1), Schema("t", v2)])
    with pytest.raises(ConfigError, match=r"not a setpiece\.schemas\.Schema"):
        Stack("s", schemas=[v1])  # type: ignore[list-item]


def test_declared_versions_must_keep_their_compatibility_rule() -> None:
    v1 = {"type": "object", "properties": {"id": {"type": "string"}}}
    v2 = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    with pytest.raises(ConfigError, match=r"version 2 is not BACKWARD compatible with version "
                                          r"1: \$\.id: required attribute added"):
        Stack("s", schemas=[Schema("t", v1), Schema("t", v2, version=2)])
    Stack("s", schemas=[Schema("t", v1), Schema("t", v2, version=2, compatibility="FORWARD")])
    v3 = {"type": "object", "properties": {"id": {"type": "integer"}}}
    with pytest.raises(ConfigError, match="version 3 is not FORWARD_TRANSITIVE compatible"):
        Stack("s", schemas=[Schema("t", v1), Schema("t", v2, version=2, compatibility="NONE"),
                            Schema("t", v3, version=3, compatibility="FORWARD_TRANSITIVE")])
