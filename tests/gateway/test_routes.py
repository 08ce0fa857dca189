"""Routes on services: decoding, JSON answers, atomic effects, tenants, ingress, OpenAPI."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pydantic
import pytest

from setpiece import (
    ConfigError,
    Event,
    RequestContext,
    Response,
    Service,
    Stack,
)
from tests.conftest import ENGINES
from tests.gateway.conftest import auth, bearer, client, notes_stack, token

Run = Any
Urls = tuple[str, str | None]
#: The gateway on SQLite and (marked ``servers``) on NATS JetStream + PostgreSQL.
on_every_engine = pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)


@on_every_engine
def test_contract_read_write_and_events_commit_with_the_store(
    run: Run, engine_urls: Urls
) -> None:
    seen: list[Event] = []
    audit = Service("audit")

    @audit.on({"type": ["note_written"]})
    async def note(event: Event, ctx: Any) -> None:
        seen.append(event)

    from tests.gateway.conftest import notes_service

    stack = Stack("app", services=[notes_service(), audit], auth=auth())

    async def main() -> None:
        async with (
            stack.start(engine_urls[0], store=engine_urls[1]) as rt,
            client(rt.asgi()) as c,
        ):
            h = bearer(token())
            h["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            r = await c.put("/notes/a", json={"text": "hello"}, headers=h)
            assert r.status_code == 200 and r.json() == {"ok": True}
            assert r.headers["x-setpiece-version"] == "1"
            r = await c.get("/notes/a", headers=h)
            assert r.json() == {"text": "hello", "version": "1"}
            assert await rt.store("notes", tenant="t1").get("a") == "hello"
            await rt.drain(timeout=10)
        assert len(seen) == 1
        event = seen[0]
        assert event.data == {"name": "a"} and event.tenant == "t1" and event.source == "notes"
        assert event.traceparent is not None
        assert event.traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        assert event.causationid is not None and event.correlationid == event.causationid

    run(main())


@on_every_engine
def test_tenant_isolation(run: Run, engine_urls: Urls) -> None:
    """t1 can never read t2's notes: each tenant has its own store namespace."""

    async def main() -> None:
        async with (
            notes_stack().start(engine_urls[0], store=engine_urls[1]) as rt,
            client(rt.asgi()) as c,
        ):
            t1, t2 = bearer(token(tenant="t1")), bearer(token(tenant="t2"))
            assert (await c.put("/notes/secret", json={"text": "t2 only"}, headers=t2)
                    ).status_code == 200
            assert (await c.get("/notes/secret", headers=t1)).status_code == 404
            assert (await c.put("/notes/secret", json={"text": "mine"}, headers=t1)
                    ).status_code == 200
            assert (await c.get("/notes/secret", headers=t2)).json()["text"] == "t2 only"
            assert (await c.get("/notes/secret", headers=t1)).json()["text"] == "mine"
            # a token that names its tenant in a forged header still gets its own
            forged = {**t1, "x-tenant": "t2", "tenant": "t2"}
            assert (await c.get("/notes/secret", headers=forged)).json()["text"] == "mine"
            assert await rt.store("notes", tenant="t2").get("secret") == "t2 only"
            assert await rt.store("notes").get("secret") is None

    run(main())


class Order(pydantic.BaseModel):
    item: str
    qty: int = pydantic.Field(gt=0)


class Tag(msgspec.Struct):
    name: str
    weight: float = 1.0


def shop_stack() -> Stack:
    svc = Service("shop")

    @svc.post("/orders", scopes=["shop:write"])
    async def order(body: Order, ctx: RequestContext, dry_run: bool = False) -> Response:
        if not dry_run:
            await ctx.store.put(body.item, body.qty)
        return Response({"item": body.item, "by": ctx.identity.subject}, status=201,
                        headers={"location": f"/orders/{body.item}"})

    @svc.get("/items/{item_id}", scopes=["shop:read"])
    async def item(
        item_id: int, fields: list[str] | None = None, limit: int = 10
    ) -> dict[str, Any]:
        return {"id": item_id, "fields": fields, "limit": limit}

    @svc.post("/tags", scopes=["shop:write"])
    def tag(body: Tag, ctx: Any) -> Tag:  # a plain def runs in a worker thread
        ctx.store.put(body.name, body.weight)
        return body

    @svc.post("/boom", scopes=["shop:write"])
    async def boom(body: dict[str, Any], ctx: Any) -> None:
        await ctx.store.put("half", "done")
        await ctx.publish(Event(type="half_done"))
        raise ValueError("exploded after writing")

    @svc.get("/health-of-shop", public=True)
    async def public() -> str:
        return "fine"

    return Stack("shop", services=[svc], auth=auth())


@on_every_engine
def test_parameters_are_decoded_and_validation_names_the_field(
    run: Run, engine_urls: Urls
) -> None:
    async def main() -> None:
        async with (
            shop_stack().start(engine_urls[0], store=engine_urls[1]) as rt,
            client(rt.asgi()) as c,
        ):
            h = bearer(token(["shop:read", "shop:write"]))
            r = await c.post("/orders", json={"item": "tea", "qty": 2}, headers=h)
            assert r.status_code == 201 and r.headers["location"] == "/orders/tea"
            assert r.json() == {"item": "tea", "by": "u1"}
            assert await rt.store("shop", tenant="t1").get("tea") == 2
            r = await c.post("/orders?dry_run=true", json={"item": "cake", "qty": 1}, headers=h)
            assert r.status_code == 201 and await rt.store("shop", tenant="t1").get("cake") is None

            r = await c.post("/orders", json={"item": "tea", "qty": 0}, headers=h)
            assert r.status_code == 422 and r.json()["field"] == "body.qty"
            r = await c.post("/orders", json={"qty": 1}, headers=h)
            assert r.status_code == 422 and r.json()["field"] == "body.item"
            r = await c.post("/orders", content=b"{nope", headers=h)
            assert r.status_code == 400 and r.json()["field"] == "body"
            r = await c.post("/orders", headers=h)
            assert r.status_code == 422 and r.json()["field"] == "body"
            r = await c.post("/orders?dry_run=perhaps", json={"item": "x", "qty": 1}, headers=h)
            assert r.status_code == 422 and r.json()["field"] == "query.dry_run"

            r = await c.get("/items/7?fields=a&fields=b&limit=3", headers=h)
            assert r.json() == {"id": 7, "fields": ["a", "b"], "limit": 3}
            r = await c.get("/items/seven", headers=h)
            assert r.status_code == 422 and r.json()["field"] == "path.item_id"

            r = await c.post("/tags", json={"name": "red", "weight": "heavy"}, headers=h)
            assert r.status_code == 422 and r.json()["field"] == "body.weight"
            r = await c.post("/tags", json={"name": "red"}, headers=h)
            assert r.json() == {"name": "red", "weight": 1.0}
            assert await rt.store("shop", tenant="t1").get("red") == 1.0

            assert (await c.get("/health-of-shop")).json() == "fine"
            assert (await c.get("/nowhere", headers=h)).status_code == 404
            r = await c.delete("/orders", headers=h)
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            r = await c.post("/orders", content=b"x" * (2 * 1024 * 1024), headers=h)
            assert r.status_code == 413

    run(main())


def test_a_failing_handler_is_500_with_an_error_id_and_commits_nothing(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with shop_stack().start(engine="memory") as rt, client(rt.asgi()) as c:
            r = await c.post("/boom", json={}, headers=bearer(token(["shop:write"])))
            assert r.status_code == 500
            body = r.json()
            assert body["error"] == "internal" and len(body["id"]) == 16
            assert "exploded" not in r.text  # no internals leak to the caller
            assert await rt.store("shop", tenant="t1").get("half") is None
            ends = await rt.engine.end_offsets("bus.default")
            assert sum(ends) == 0  # the event was not published either
            return body["id"]

    with caplog.at_level(logging.ERROR, logger="setpiece.gateway"):
        error_id = run(main())
    assert any(error_id in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_route_declarations_are_checked() -> None:
    svc = Service("s")
    with pytest.raises(ConfigError, match="no parameter 'name'"):
        svc.get("/x/{name}", name="x")(lambda: None)
    with pytest.raises(ConfigError, match="one string"):
        svc.get("/x", scopes="a:b", name="y")(lambda: None)

    @svc.get("/notes/{a}")
    async def one(a: str) -> None: ...

    @svc.get("/notes/{b}", name="two")
    async def two(b: str) -> None: ...

    with pytest.raises(ConfigError, match="already served"):
        Stack("x", services=[svc])
    other = Service("o")

    @other.post("/events/mine")
    async def clash() -> None: ...

    with pytest.raises(ConfigError, match="reserved"):
        Stack("x", services=[other])


def test_http_error_answers_with_its_status(run: Run) -> None:
    async def main() -> None:
        async with notes_stack().start(engine="memory") as rt, client(rt.asgi()) as c:
            r = await c.get("/notes/none", headers=bearer(token()))
            assert r.status_code == 404 and r.json() == {"error": "not_found",
                                                         "detail": "no note 'none'"}

    run(main())


# -- event ingress (CloudEvents HTTP binding) -------------------------------------------------


def ingress_stack(seen: list[Event]) -> Stack:
    svc = Service("hooks")

    @svc.on({"type": ["payment.received"]})
    async def paid(event: Event, ctx: Any) -> None:
        seen.append(event)

    return Stack("hooks", services=[svc], auth=auth())


@on_every_engine
def test_cloudevents_structured_binary_and_batch(run: Run, engine_urls: Urls) -> None:
    seen: list[Event] = []

    async def main() -> None:
        async with (
            ingress_stack(seen).start(engine_urls[0], store=engine_urls[1]) as rt,
            client(rt.asgi()) as c,
        ):
            h = bearer(token(["events:publish"]))
            structured = {"specversion": "1.0", "id": "e1", "source": "stripe",
                          "type": "payment.received", "data": {"amount": 5}, "myext": "x"}
            r = await c.post("/events/default", content=msgspec.json.encode(structured),
                             headers={**h, "content-type": "application/cloudevents+json"})
            assert r.status_code == 202 and r.json() == {"ids": ["e1"]}
            binary = {**h, "ce-specversion": "1.0", "ce-id": "e2", "ce-source": "stripe",
                      "ce-type": "payment.received", "ce-subject": "inv%2042",
                      "content-type": "application/json"}
            r = await c.post("/events/default", content=b'{"amount": 7}', headers=binary)
            assert r.status_code == 202
            batch = [dict(structured, id="e3"), dict(structured, id="e4")]
            r = await c.post("/events/default", content=msgspec.json.encode(batch),
                             headers={**h, "content-type": "application/cloudevents-batch+json"})
            assert r.json() == {"ids": ["e3", "e4"]}
            await rt.drain(timeout=10)

    run(main())
    by_id = {e.id: e for e in seen}
    assert sorted(by_id) == ["e1", "e2", "e3", "e4"]
    assert by_id["e2"].data == {"amount": 7} and by_id["e2"].subject == "inv 42"
    assert by_id["e2"].datacontenttype == "application/json"
    assert by_id["e1"].extensions == {"myext": "x"}
    assert all(e.tenant == "t1" and e.traceparent for e in seen)  # from the token and request


BAD = [
    ({"content-type": "application/cloudevents+json"}, b"{", "event", 400),
    ({"content-type": "application/cloudevents+json"},
     b'{"specversion":"1.0","id":"1","source":"s"}', "type", 400),
    ({"content-type": "application/cloudevents+json"},
     b'{"specversion":"0.3","id":"1","source":"s","type":"t"}', "specversion", 400),
    ({"content-type": "application/cloudevents+json"},
     b'{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}', "time", 400),
    ({"content-type": "application/cloudevents+json"},
     b'{"specversion":"1.0","id":"1","source":"s","type":"t","traceparent":"x"}',
     "traceparent", 400),
    ({"content-type": "application/cloudevents-batch+json"},
     b'[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"id":"2"}]', "[1].source", 400),
    ({"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "1",
      "ce-source": "s"}, b"{}", "type", 400),
    ({"content-type": "application/json"}, b"{}", "content-type", 415),
    ({"content-type": "application/cloudevents+json"},
     b'{"specversion":"1.0","id":"1","source":"s","type":"t","tenant":"t2"}', "tenant", 403),
]


@pytest.mark.parametrize(("headers", "body", "field", "status"), BAD)
def test_bad_events_are_refused_naming_the_field(
    run: Run, headers: dict[str, str], body: bytes, field: str, status: int
) -> None:
    async def main() -> None:
        async with ingress_stack([]).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = {**bearer(token(["events:publish"])), **headers}
            r = await c.post("/events/default", content=body, headers=h)
            assert r.status_code == status, r.text
            assert r.json()["field"] == field
            assert sum(await rt.engine.end_offsets("bus.default")) == 0

    run(main())


def test_ingress_needs_the_publish_scope_and_a_known_bus(run: Run) -> None:
    async def main() -> None:
        async with ingress_stack([]).start(engine="memory") as rt, client(rt.asgi()) as c:
            ev = b'{"specversion":"1.0","id":"1","source":"s","type":"t"}'
            ct = {"content-type": "application/cloudevents+json"}
            r = await c.post("/events/default", content=ev, headers={**ct, **bearer(token())})
            assert r.status_code == 403
            r = await c.post("/events/default", content=ev, headers=ct)
            assert r.status_code == 401
            r = await c.post("/events/nope", content=ev,
                             headers={**ct, **bearer(token(["events:publish"]))})
            assert r.status_code == 404

    run(main())


# -- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_describes_routes_scopes_and_schemas(run: Run) -> None:
    async def main() -> dict[str, Any]:
        async with shop_stack().start(engine="memory") as rt, client(rt.asgi()) as c:
            r = await c.get("/openapi.json")
            assert r.status_code == 200
            doc: dict[str, Any] = r.json()
            return doc

    doc = run(main())
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    post = doc["paths"]["/orders"]["post"]
    assert post["security"] == [{"bearerAuth": ["shop:write"]}]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Order"}
    assert doc["components"]["schemas"]["Order"]["required"] == ["item", "qty"]
    assert "Tag" in doc["components"]["schemas"]
    params = {p["name"]: p for p in doc["paths"]["/items/{item_id}"]["get"]["parameters"]}
    assert params["item_id"]["in"] == "path" and params["item_id"]["schema"]["type"] == "integer"
    assert params["limit"]["required"] is False
    assert doc["paths"]["/health-of-shop"]["get"]["security"] == []
    assert doc["paths"]["/events/{bus}"]["post"]["security"] == [
        {"bearerAuth": ["events:publish"]}]


def test_headers_http_cannot_carry_are_refused_when_made(run: Run) -> None:
    """A header value with CR/LF or non-Latin-1 text (say, copied from a request) is refused
    when the handler makes it: a 500 with an error id, not a response that drops the connection
    or a traceback from the server."""
    from setpiece import HTTPError

    for bad in ("a\r\nx-evil: 1", "中文", "\x00"):
        with pytest.raises(ValueError, match="header 'x-note'"):
            Response({}, headers={"x-note": bad})
        with pytest.raises(ValueError, match="header 'x-note'"):
            HTTPError(400, "no", headers={"x-note": bad})
    with pytest.raises(ValueError, match="not an HTTP token"):
        Response({}, headers={"x note": "v"})
    assert Response({}, headers={"x-note": "café\tok"}).headers == {"x-note": "café\tok"}
    svc = Service("echo")

    @svc.get("/echo/{text}", public=True)
    async def echo(text: str) -> Response:
        return Response({"ok": True}, headers={"x-echo": text})

    async def main() -> None:
        from setpiece.gateway import serving

        stack = Stack("echo", services=[svc], auth=auth())
        async with serving(stack.asgi(engine="memory")) as url:
            import httpx

            async with httpx.AsyncClient(base_url=url) as c:
                assert (await c.get("/echo/fine")).headers["x-echo"] == "fine"
                r = await c.get("/echo/a%0d%0ax-evil:%201")
                assert r.status_code == 500 and "x-evil" not in r.headers
                assert (await c.get("/echo/%E4%B8%AD")).status_code == 500

    run(main())
