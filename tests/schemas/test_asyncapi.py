"""AsyncAPI 3.0: each example's document validates against the official JSON Schema.

The schema comes from the ``@asyncapi/specs`` npm package, fetched by ``scripts/setup`` (or by
this module's fixture) into ``.cache/npm``; never vendored. In CI a failure to fetch it fails
the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from examples.product_orchestration.app import build_stack as orchestration_stack
from examples.product_registration.app import build_stack as registration_stack
from setpiece import Event, JWTAuth, Service, Stack, Stream
from setpiece.bus import Bus
from setpiece.gateway import EVENTS_SCOPE, Gateway
from setpiece.schemas import Schema
from setpiece.schemas.asyncapi import asyncapi_document
from tests.gateway.conftest import client

ROOT = Path(__file__).resolve().parents[2]
SPECS = "@asyncapi/specs@6.11.1"  # the same pin as scripts/setup
CACHE = ROOT / ".cache" / "npm"
SCHEMA = CACHE / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
Run = Callable[[Any], Any]


@pytest.fixture(scope="module")
def official() -> Any:
    """A validator of the official AsyncAPI 3.0.0 JSON Schema."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    if not SCHEMA.exists():
        npm = shutil.which("npm")
        if npm is None and not os.environ.get("CI"):
            pytest.skip("npm is not installed: cannot fetch @asyncapi/specs")
        assert npm is not None, "npm is needed to fetch @asyncapi/specs"
        done = subprocess.run(
            [npm, "install", "--prefix", str(CACHE), "--no-save", "--no-audit", "--no-fund",
             "--silent", SPECS], capture_output=True, text=True, timeout=300, check=False)
        assert SCHEMA.exists(), f"could not fetch {SPECS}: {done.stderr[-2000:]}"
    return jsonschema_rs.validator_for(json.loads(SCHEMA.read_text(encoding="utf-8")))


def errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.instance_path)}: {e.message[:300]}" for e in validator.iter_errors(doc)]


class Placed(msgspec.Struct):
    id: str
    lines: list[dict[str, int]]


def schema_stack() -> Stack:
    svc = Service("shop")

    @svc.on({"type": ["order_placed"]})
    async def placed(order: Placed) -> None: ...

    @svc.consume("orders")
    async def record(event: Event) -> None: ...

    audit = Bus("audit")
    default = Bus("default")
    default.rule("copy", {"type": ["order_placed"]}, Stream("orders"), audit)
    paid = {"type": "object", "properties": {"id": {"type": "string"},
            "tree": {"$ref": "#/$defs/node"}},
            "$defs": {"node": {"type": "object", "properties": {
                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}}
    return Stack("shop", services=[svc], buses=[default, audit], streams=[Stream("orders")],
                 auth=JWTAuth(secret="x" * 32), schemas=[
                     Schema("order_paid", paid, description="An order was paid."),
                     Schema("order.shipped.v1", {"type": "object"})])


@pytest.mark.parametrize("make", [registration_stack, orchestration_stack, schema_stack],
                         ids=["product_registration", "product_orchestration", "schemas"])
def test_each_document_validates_against_the_official_schema(official: Any,
                                                             make: Callable[[], Stack]) -> None:
    doc = asyncapi_document(make())
    assert errors(official, doc) == []
    assert doc["asyncapi"] == "3.0.0" and doc["operations"]
    broken = {**doc, "operations": {"x": {"action": "shout", "channel": {}}}}
    assert errors(official, broken)  # the validator does look


def test_channels_operations_messages_and_security() -> None:
    doc = asyncapi_document(schema_stack())
    assert set(doc["channels"]) == {"bus_default", "bus_audit", "stream_orders"}
    assert doc["channels"]["bus_default"]["address"] == "bus.default"
    assert set(doc["channels"]["bus_default"]["messages"]) == {
        "order_paid", "order_placed", "order.shipped.v1"}
    receive = doc["operations"]["shop.placed"]
    assert receive["action"] == "receive"
    assert receive["messages"] == [{"$ref": "#/channels/bus_default/messages/order_placed"}]
    assert doc["operations"]["shop.record"]["channel"] == {"$ref": "#/channels/stream_orders"}
    publish = doc["operations"]["publish.default"]
    assert publish["x-scopes"] == ["events:publish"] and publish["security"]
    assert {"rule.default.copy.0", "rule.default.copy.1"} <= set(doc["operations"])
    schemas = doc["components"]["schemas"]
    # the handler's model declares what it consumes: order_placed has no Schema of its own
    assert schemas["order_placed"]["properties"]["lines"]["type"] == "array"
    tree = schemas["order_paid"]["properties"]["tree"]
    assert tree == {"$ref": "#/components/schemas/order_paid/$defs/node"}
    message = doc["components"]["messages"]["order_paid"]
    assert message["description"] == "An order was paid." and message["x-schema-version"] == 1


def test_the_gateway_serves_it_beside_openapi(run: Run) -> None:
    async def main() -> None:
        async with schema_stack().start("memory") as rt, client(rt.asgi()) as c:
            r = await c.get("/asyncapi.json")
            assert r.status_code == 200 and r.json() == json.loads(
                json.dumps(asyncapi_document(rt.stack)))
            assert (await c.get("/openapi.json")).status_code == 200

    run(main())


def test_it_describes_the_envelope_and_the_bearer_scheme_as_the_openapi_document_does() -> None:
    """The two documents of one stack share the CloudEvent envelope (AsyncAPI names every
    extension, OpenAPI the ones a publisher sets), the bearer scheme and the ingress scope."""
    stack = schema_stack()
    events = asyncapi_document(stack)
    http = Gateway(stack).openapi()
    envelope, ingress = (events["components"]["schemas"]["CloudEvent"],
                         http["components"]["schemas"]["CloudEvent"])
    assert envelope["required"] == ingress["required"] == ["id", "source", "type", "specversion"]
    assert list(ingress["properties"]) == [
        "id", "source", "type", "specversion", "time", "subject", "datacontenttype", "tenant",
        "partitionkey", "data"]
    for name, schema in ingress["properties"].items():
        assert envelope["properties"][name] == schema, name
    assert set(envelope["properties"]) - set(ingress["properties"]) == {
        "dataschema", "domain", "subdomain", "service", "category", "dataversion",
        "traceparent", "correlationid", "causationid"}
    bearer, http_bearer = (events["components"]["securitySchemes"]["bearerAuth"],
                           http["components"]["securitySchemes"]["bearerAuth"])
    assert {k: v for k, v in bearer.items() if k != "description"} == {
        k: v for k, v in http_bearer.items() if k != "description"} == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert bearer["description"].startswith(http_bearer["description"])
    ingest = http["paths"]["/events/{bus}"]["post"]
    assert events["operations"]["publish.default"]["x-scopes"] == [EVENTS_SCOPE]
    assert ingest["security"] == [{"bearerAuth": [EVENTS_SCOPE]}]
