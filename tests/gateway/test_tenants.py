"""An event naming another tenant than the token is a 403, on every way in: CloudEvents ingress
(structured, binary, batch) and events that route handlers publish. A token with no tenant may
publish only events that name none."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from setpiece import Event, RequestContext, Service, Stack
from tests.gateway.conftest import auth, bearer, client, token

Run = Any
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def _event(event_id: str, tenant: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"specversion": "1.0", "id": event_id, "source": "s",
                           "type": "ping", "data": {"n": 1}}
    if tenant is not None:
        out["tenant"] = tenant
    return out


def tenant_stack(seen: list[Event], *, with_auth: bool = True) -> Stack:
    svc = Service("pings")

    @svc.on({"type": ["ping"]})
    async def ping(event: Event, ctx: Any) -> None:
        seen.append(event)
        await ctx.store.put(event.id, "seen")  # the event's tenant's store

    @svc.post("/pings", scopes=["pings:write"])
    async def post(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await ctx.store.put("posted", body)
        await ctx.publish(Event(type="ping", source="pings", tenant=body.get("tenant"),
                                data={"n": 2}))
        return {"ok": True}

    return Stack("pings", services=[svc], auth=auth() if with_auth else None)


def _h(tenant: str | None) -> dict[str, str]:
    return bearer(token(["events:publish", "pings:write"], tenant=tenant))


async def _count(rt: Any) -> int:
    return sum(await rt.engine.end_offsets("bus.default"))


@pytest.mark.parametrize("tenant", [None, "t1"], ids=["tenant-less token", "t1 token"])
def test_ingress_refuses_events_naming_another_tenant(run: Run, tenant: str | None) -> None:
    seen: list[Event] = []

    async def main() -> None:
        async with tenant_stack(seen).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = _h(tenant)
            r = await c.post("/events/default", content=msgspec.json.encode(_event("e1", "t2")),
                             headers={**h, **STRUCTURED})
            assert r.status_code == 403, r.text
            assert r.json()["field"] == "tenant"
            batch = [_event("e2", tenant), _event("e3", "t2")]
            r = await c.post("/events/default", content=msgspec.json.encode(batch),
                             headers={**h, **BATCH})
            assert r.status_code == 403 and r.json()["field"] == "[1].tenant", r.text
            binary = {**h, "ce-specversion": "1.0", "ce-id": "e4", "ce-source": "s",
                      "ce-type": "ping", "ce-tenant": "t2", "content-type": "application/json"}
            r = await c.post("/events/default", content=b'{"n": 1}', headers=binary)
            assert r.status_code == 403 and r.json()["field"] == "tenant", r.text
            assert await _count(rt) == 0  # nothing of the refused requests was stored
            # events that name the token's tenant, or none, are accepted
            r = await c.post("/events/default",
                             content=msgspec.json.encode([_event("e5", tenant), _event("e6")]),
                             headers={**h, **BATCH})
            assert r.status_code == 202, r.text
            await rt.drain(timeout=10)
            assert await rt.store("pings", tenant="t2").get("e1") is None

    run(main())
    assert sorted((e.id, e.tenant) for e in seen) == [("e5", tenant), ("e6", tenant)]


@pytest.mark.parametrize("tenant", [None, "t1"], ids=["tenant-less token", "t1 token"])
def test_a_route_cannot_publish_for_another_tenant(run: Run, tenant: str | None) -> None:
    seen: list[Event] = []

    async def main() -> None:
        async with tenant_stack(seen).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = _h(tenant)
            r = await c.post("/pings", json={"tenant": "t2"}, headers=h)
            assert r.status_code == 403 and r.json()["field"] == "tenant", r.text
            assert await _count(rt) == 0
            assert await rt.store("pings", tenant=tenant).get("posted") is None  # no commit
            body: dict[str, Any] = {} if tenant is None else {"tenant": tenant}
            assert (await c.post("/pings", json=body, headers=h)).status_code == 200
            await rt.drain(timeout=10)

    run(main())
    assert [e.tenant for e in seen] == [tenant]


def test_without_auth_there_is_no_token_to_compare_with(run: Run) -> None:
    """A stack with no auth has no tenants of its own: events keep the tenant they name."""
    seen: list[Event] = []

    async def main() -> None:
        stack = tenant_stack(seen, with_auth=False)
        async with stack.start(engine="memory") as rt, client(rt.asgi()) as c:
            r = await c.post("/events/default", content=msgspec.json.encode(_event("e1", "t2")),
                             headers=STRUCTURED)
            assert r.status_code == 202, r.text
            await rt.drain(timeout=10)

    run(main())
    assert [(e.id, e.tenant) for e in seen] == [("e1", "t2")]
