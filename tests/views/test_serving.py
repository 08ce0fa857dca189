"""Views served read-only over the gateway (scopes and tenant isolation as any route), read
per tenant from handlers and from outside, and listed by ``setpiece inspect``."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece import Event, Stack, Stream
from setpiece.views import Aggregate, Table, Tumbling
from tests.gateway.conftest import auth, bearer, client, token
from tests.views.helpers import at

profiles = Stream("profiles", partitions=2)
orders = Stream("orders", partitions=2)


def stack(*, with_auth: bool = True) -> Stack:
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    agg = Aggregate("per_customer", orders, key=lambda e: e.partitionkey, window=Tumbling(60),
                    initial=lambda: 0, add=lambda acc, e: acc + 1)
    return Stack("served", streams=[profiles, orders], views=[table, agg],
                 auth=auth() if with_auth else None)


def p(key: str, name: str, tenant: str | None = None) -> Event:
    return Event(type="p", source="t", partitionkey=key, data={"name": name}, tenant=tenant)


def test_views_are_served_with_scopes_and_tenant_isolation(run: Any) -> None:
    async def main() -> None:
        async with stack().start(engine="memory") as rt, client(rt.asgi()) as c:
            await rt.publish_many([p("cu-1", "Ann"), p("cu-2", "Bo"), p("cu-1", "Tia", "t1")],
                                  stream="profiles")
            await rt.publish(Event(type="o", source="t", partitionkey="cu-1", time=at(5)),
                             stream="orders")
            await rt.drain()
            reader = bearer(token(["views:profile_table", "views:per_customer"], tenant=None))
            r = await c.get("/views/profile_table/cu-1", headers=reader)
            assert r.status_code == 200 and r.json() == {"key": "cu-1",
                                                         "value": {"name": "Ann"}}, r.text
            r = await c.get("/views/profile_table/nobody", headers=reader)
            assert r.status_code == 404
            r = await c.get("/views/profile_table", params={"prefix": "cu-"}, headers=reader)
            assert [i["key"] for i in r.json()["items"]] == ["cu-1", "cu-2"]
            r = await c.get("/views/profile_table", params={"start": "cu-2"}, headers=reader)
            assert [i["key"] for i in r.json()["items"]] == ["cu-2"]
            r = await c.get("/views/per_customer/cu-1", headers=reader)
            assert r.json()["windows"] == [{"start": at(0), "end": at(60), "value": 1}]
            # the token's tenant sees its rows only
            t1 = bearer(token(["views:profile_table"], tenant="t1"))
            r = await c.get("/views/profile_table/cu-1", headers=t1)
            assert r.json()["value"] == {"name": "Tia"}
            r = await c.get("/views/profile_table", headers=t1)
            assert [i["key"] for i in r.json()["items"]] == ["cu-1"]
            assert await rt.view("profile_table", tenant="t1").get("cu-1") == {"name": "Tia"}
            # scopes: another view's scope is not enough; no token is a 401
            other = bearer(token(["views:per_customer"], tenant=None))
            assert (await c.get("/views/profile_table/cu-1", headers=other)).status_code == 403
            assert (await c.get("/views/profile_table/cu-1")).status_code == 401
            assert (await c.get("/views/nope/x", headers=reader)).status_code == 404
            r = await c.get("/views/profile_table", params={"limit": "0"}, headers=reader)
            assert r.status_code == 400 and r.json()["field"] == "limit"

    run(main())


@pytest.mark.parametrize("path", ["/views/mine", "/views/x/{id}"])
def test_service_routes_cannot_take_the_views_paths(path: str) -> None:
    from setpiece import ConfigError, Service

    svc = Service("s")

    @svc.get(path)
    async def mine(id: str = "") -> dict[str, Any]:
        return {}

    with pytest.raises(ConfigError, match="reserved by the gateway"):
        Stack("s", services=[svc])
