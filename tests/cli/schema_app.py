"""Stacks for the schema command tests (``tests.cli.schema_app:v1`` ...)."""

from __future__ import annotations

from setpiece import Stack
from setpiece.schemas import Schema

V1 = {"type": "object", "properties": {"id": {"type": "string"}, "qty": {"type": "integer"},
      "from": {"type": "string"}}, "required": ["id"]}
V2_OK = {**V1, "properties": {**V1["properties"], "note": {}}}
V2_BREAKS = {**V1, "required": ["id", "qty"]}


def v1() -> Stack:
    return Stack("schemas", schemas=[Schema("order_placed", V1)])


def v2_ok() -> Stack:
    return Stack("schemas", schemas=[Schema("order_placed", V1),
                                     Schema("order_placed", V2_OK, version=2)])


def v2_breaks() -> Stack:
    return Stack("schemas", schemas=[Schema("order_placed", V2_BREAKS, version=2)])
