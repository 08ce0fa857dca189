"""The HTTP edge refuses what the runtime must never see (issue 11): reserved extension names,
JSON nested deeper than the limit (in event ingress, route bodies and the task-token routes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from setpiece import Event, Service, Stack
from setpiece.event import MAX_DEPTH, RESERVED_EXTENSIONS
from tests.gateway.conftest import auth, bearer, client, token

Run = Callable[[Any], Any]
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def deep(levels: int) -> bytes:
    return b"[" * levels + b"1" + b"]" * levels


def edge_stack(seen: list[Event]) -> Stack:
    svc = Service("hooks")

    @svc.on({"source": [{"prefix": ""}]})
    async def audit(event: Event, ctx: Any) -> None:
        seen.append(event)

    @svc.post("/echo", scopes=["events:publish"])
    async def echo(body: Any) -> Any:
        return {"ok": True}

    @svc.put("/notes/{name}", scopes=["events:publish"])
    async def note(name: str, ctx: Any) -> Any:
        await ctx.store.put(name, True)
        return {"ok": True}

    return Stack("hooks", services=[svc], auth=auth())


def envelope(**extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e1", "source": "s", "type": "t", **extra}


@pytest.mark.parametrize("mark", sorted(RESERVED_EXTENSIONS))
def test_ingress_refuses_reserved_extension_names(run: Run, mark: str) -> None:
    seen: list[Event] = []

    async def main() -> None:
        async with edge_stack(seen).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = bearer(token(["events:publish"]))
            r = await c.post("/events/default", headers={**h, **STRUCTURED},
                             content=msgspec.json.encode(envelope(**{mark: "x"})))
            assert r.status_code == 400 and r.json()["field"] == f"extensions.{mark}"
            nested = envelope(extensions={mark: "x"})
            r = await c.post("/events/default", headers={**h, **BATCH},
                             content=msgspec.json.encode([envelope(id="ok"), nested]))
            assert r.status_code == 400 and r.json()["field"] == f"[1].extensions.{mark}"
            binary = {**h, "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "s",
                      "ce-type": "t", f"ce-{mark}": "x", "content-type": "application/json"}
            r = await c.post("/events/default", headers=binary, content=b"{}")
            assert r.status_code == 400 and r.json()["field"] == f"extensions.{mark}"
            assert sum(await rt.engine.end_offsets("bus.default")) == 0

    run(main())


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 100_000])
def test_ingress_refuses_data_nested_too_deep_naming_the_limit(run: Run, levels: int) -> None:
    async def main() -> None:
        async with edge_stack([]).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = bearer(token(["events:publish"]))
            body = b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":' + deep(
                levels) + b"}"
            r = await c.post("/events/default", headers={**h, **STRUCTURED}, content=body)
            assert r.status_code == 400, r.text
            assert r.json()["field"] == "data" and str(MAX_DEPTH) in r.json()["detail"]
            r = await c.post("/events/default", headers={**h, **BATCH},
                             content=b"[" + body + b"]")
            assert r.status_code == 400 and str(MAX_DEPTH) in r.json()["detail"]
            binary = {**h, "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "s",
                      "ce-type": "t", "content-type": "application/json"}
            r = await c.post("/events/default", headers=binary, content=deep(levels))
            assert r.status_code == 400 and r.json()["field"] == "data"
            del binary["content-type"]  # no content type: JSON when it parses as JSON
            r = await c.post("/events/default", headers=binary, content=deep(levels))
            assert r.status_code == 400 and r.json()["field"] == "data"
            # at the limit it is accepted
            ok = b'{"specversion":"1.0","id":"2","source":"s","type":"t","data":' + deep(
                MAX_DEPTH) + b"}"
            r = await c.post("/events/default", headers={**h, **STRUCTURED}, content=ok)
            assert r.status_code == 202, r.text

    run(main())


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 100_000])
def test_route_bodies_and_task_token_routes_refuse_deep_json(run: Run, levels: int) -> None:
    async def main() -> None:
        async with edge_stack([]).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = {**bearer(token(["events:publish", "workflows:tasks"])),
                 "content-type": "application/json"}
            r = await c.post("/echo", headers=h, content=deep(levels))
            assert r.status_code == 400, r.text
            assert r.json()["field"] == "body" and str(MAX_DEPTH) in r.json()["detail"]
            assert (await c.post("/echo", headers=h, content=deep(MAX_DEPTH))).status_code == 200
            body = b'{"token": "sp1.x", "output": ' + deep(levels) + b"}"
            r = await c.post("/workflows/tasks/success", headers=h, content=body)
            assert r.status_code == 400, r.text
            assert r.json()["field"] == "body" and str(MAX_DEPTH) in r.json()["detail"]

    run(main())


def test_a_store_key_from_the_request_that_no_engine_holds_is_a_400(run: Run) -> None:
    async def main() -> None:
        async with edge_stack([]).start(engine="memory") as rt, client(rt.asgi()) as c:
            h = bearer(token(["events:publish"]))
            r = await c.put("/notes/a%00b", headers=h)
            assert r.status_code == 400 and "U+0000" in r.json()["detail"], r.text
            assert (await c.put("/notes/ab", headers=h)).status_code == 200

    run(main())
