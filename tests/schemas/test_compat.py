"""is_compatible per mode: the registry's meanings, on the changes a team makes every week."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece.schemas import is_compatible
from setpiece.schemas._compat import breaking_changes

V1: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}},
    "required": ["id"],
}


def with_props(extra: dict[str, Any], *, required: list[str] | None = None,
               closed: bool = False, base: dict[str, Any] = V1) -> dict[str, Any]:
    doc = {**base, "properties": {**base["properties"], **extra}}
    if required is not None:
        doc["required"] = required
    if closed:
        doc["additionalProperties"] = False
    return doc


def without(name: str, base: dict[str, Any] = V1) -> dict[str, Any]:
    props = {k: v for k, v in base["properties"].items() if k != name}
    return {**base, "properties": props,
            "required": [r for r in base.get("required", []) if r != name]}


# (previous, new, BACKWARD, FORWARD)
CASES = {
    "optional field added to an open model": (
        V1, with_props({"note": {"type": "string"}}), False, True),
    "optional field added to a closed model": (
        with_props({}, closed=True), with_props({"note": {"type": "string"}}, closed=True),
        True, False),
    "field removed from an open model": (V1, without("qty"), True, False),
    "field removed from a closed model": (
        with_props({}, closed=True), {**without("qty"), "additionalProperties": False},
        False, True),
    "type changed": (V1, with_props({"qty": {"type": "string"}}), False, False),
    "integer widened to number": (V1, with_props({"qty": {"type": "number"}}), True, False),
    "required field added": (
        V1, with_props({}, required=["id", "qty"]), False, True),
    "required field with a default added": (
        V1, with_props({"qty": {"type": "integer", "default": 1}}, required=["id", "qty"]),
        True, True),
    "enum extended": (
        {"enum": ["red", "blue"]}, {"enum": ["red", "blue", "green"]}, True, False),
    "enum narrowed": ({"enum": ["red", "blue"]}, {"enum": ["red"]}, False, True),
    "additional properties closed": (
        {"type": "object"}, {"type": "object", "additionalProperties": False}, False, True),
    "field covered by a partially open model": (
        {"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        {"properties": {"a": {"type": "string"}, "b": {"type": "string"}},
         "additionalProperties": {"type": "string"}}, True, True),
    "oneOf branch added": (
        {"oneOf": [{"type": "string"}]}, {"oneOf": [{"type": "string"}, {"type": "number"}]},
        True, False),
    "allOf constraint added": (
        {"type": "string"}, {"allOf": [{"type": "string"}, {"maxLength": 5}]}, False, True),
    "nothing changed but the title": (
        {"title": "a", "type": "string"}, {"title": "b", "type": "string"}, True, True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_modes(name: str) -> None:
    previous, new, backward, forward = CASES[name]
    assert is_compatible(previous, new, "BACKWARD") is backward
    assert is_compatible(previous, new, "FORWARD") is forward
    assert is_compatible(previous, new, "FULL") is (backward and forward)
    assert is_compatible(previous, new, "BACKWARD_TRANSITIVE") is backward
    assert is_compatible(previous, new, "NONE") is True


def test_a_breaking_change_names_the_path_and_the_rule() -> None:
    [change] = breaking_changes(V1, with_props({"qty": {"type": "string"}}), "BACKWARD")
    assert change.path == "$.qty"
    assert "type changed" in str(change)
    [change] = breaking_changes(V1, with_props({}, required=["id", "qty"]), "BACKWARD")
    assert str(change) == "$.qty: required attribute added"


def test_recursive_references_terminate() -> None:
    tree = {"type": "object", "properties": {"kids": {"type": "array",
            "items": {"$ref": "#"}}, "name": {"type": "string"}}}
    wider = {"type": "object", "properties": {"kids": {"type": "array",
             "items": {"$ref": "#"}}, "name": {"type": ["string", "null"]}}}
    assert is_compatible(tree, wider, "BACKWARD")
    assert not is_compatible(tree, wider, "FORWARD")


@pytest.mark.parametrize(("doc", "words"), [
    ({"type": "strng"}, "$.type: 'strng' is not a JSON Schema type"),
    ({"properties": {"a": 3}}, "$.properties.a: a schema is an object or a boolean"),
    ({"$ref": "#/definitions/nope"}, "names nothing in the schema"),
    ({"$ref": "https://example.com/x.json"}, "names another document"),
])
def test_an_invalid_document_is_a_clear_error(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError) as info:
        is_compatible(doc, {}, "BACKWARD")
    assert words in str(info.value)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="BACKWARD_TRANSITIVE"):
        is_compatible({}, {}, "SIDEWAYS")
