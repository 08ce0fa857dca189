"""The live map's routes without a browser: the graph, the node details, the event stream,
and auth (the page is public, its data needs the scope setpiece:observe)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from examples.product_orchestration.app import build_stack
from setpiece import Event, Observability, Stack
from setpiece.gateway import serving
from tests.gateway.conftest import auth, bearer, client, notes_service, token

Run = Any


def observed_example() -> Stack:
    stack = build_stack()
    return Stack(stack.name, services=list(stack.services.values()),
                 buses=list(stack.buses.values()), workflows=list(stack.workflows.values()),
                 observe=Observability())


def test_the_graph_and_a_nodes_recent_deliveries(run: Run) -> None:
    async def main() -> None:
        async with observed_example().start("memory") as rt, client(rt.asgi()) as c:
            graph = (await c.get("/_setpiece/graph")).json()
            ids = {n["id"] for n in graph["nodes"]}
            assert {"bus:default", "workflow:register-product", "service:promotions",
                    "handler:promotions.generate"} <= ids
            edges = {(e["source"], e["target"]) for e in graph["edges"]}
            assert ("bus:default", "workflow:register-product") in edges
            assert ("bus:default", "handler:promotions.generate") in edges
            await rt.publish(Event(type="product_registered", source="shop", data={
                "customer_id": "cu-1", "email": "a@example.com", "serial_number": "SN-1",
                "model": "Kettle"}))
            await rt.drain()
            node = (await c.post("/_setpiece/node",
                                 json={"id": "handler:promotions.generate"})).json()
            assert [r["type"] for r in node["recent"]] == ["discount_requested"]
            assert node["dead_letters"] == [] and node["traces"] == []
            bad = await c.post("/_setpiece/node", json={"nope": 1})
            assert bad.status_code == 400 and bad.json()["field"] == "id"
            page = await c.get("/_setpiece/")
            assert page.status_code == 200 and "cytoscape-3.35.0" in page.text
            script = await c.get("/_setpiece/vendor/cytoscape-3.35.0/cytoscape.min.js")
            assert script.status_code == 200 and len(script.content) > 100_000

    run(main())


def test_the_page_is_public_and_its_data_needs_the_observe_scope(run: Run) -> None:
    stack = Stack("app", services=[notes_service()], auth=auth(), observe=Observability())

    async def main() -> None:
        async with stack.start("memory") as rt, client(rt.asgi()) as c:
            assert (await c.get("/_setpiece/")).status_code == 200
            assert (await c.get("/_setpiece/map.js")).status_code == 200
            assert (await c.get("/_setpiece/graph")).status_code == 401
            assert (await c.get("/_setpiece/graph", headers=bearer(token()))).status_code == 403
            ok = await c.get("/_setpiece/graph", headers=bearer(token(["setpiece:observe"])))
            assert ok.status_code == 200 and ok.json()["stack"] == "app"

    run(main())


def test_the_event_stream_sends_figures_and_ends_when_the_server_stops(run: Run) -> None:
    async def main() -> None:
        async with observed_example().start("memory") as rt, httpx.AsyncClient() as c:
            async with serving(rt.asgi()) as url:
                reply = await c.send(c.build_request("GET", f"{url}/_setpiece/events"),
                                     stream=True)
                assert reply.headers["content-type"] == "text/event-stream"
                lines = reply.aiter_lines()
                assert await anext(lines) == "event: stats"
                data = json.loads((await anext(lines))[len("data: "):])
                assert data["groups"]["promotions.generate"]["deliveries"] == 0
                # leaving `serving` with the stream open: the stream ends, the server stops
                # (else uvicorn waits for it, and `serving` raises TimeoutError after 10 s)
            await reply.aclose()

    run(main())
