"""Property test over the generated OpenAPI (schemathesis): no input makes the gateway answer 5xx.

The stack is served by uvicorn on loopback in a background thread; schemathesis reads
``/openapi.json`` and generates requests for every operation, authenticated with every scope.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pydantic
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from setpiece import Event, Response, Service, Stack
from setpiece.gateway import serving
from tests.gateway.conftest import auth, notes_service, token

SCOPES = ["notes:read", "notes:write", "shop:read", "shop:write", "events:publish"]
TOKEN = token(SCOPES)


class Order(pydantic.BaseModel):
    item: str = pydantic.Field(min_length=1, max_length=50)
    qty: int = pydantic.Field(gt=0, le=1000)
    note: str | None = None


class Tag(msgspec.Struct):
    name: str
    weight: float = 1.0
    labels: list[str] = []


def fuzz_stack() -> Stack:
    shop = Service("shop")

    @shop.post("/orders", scopes=["shop:write"])
    async def order(body: Order, ctx: Any, dry_run: bool = False) -> Response:
        """Place an order."""
        if not dry_run:
            await ctx.store.put(body.item, body.qty)
            await ctx.publish(Event(type="order_placed", data=body.model_dump()))
        return Response({"item": body.item}, status=201)

    @shop.get("/items/{item_id}", scopes=["shop:read"])
    async def item(item_id: int, limit: int = 10, fields: list[str] | None = None,
                   ctx: Any = None) -> dict[str, Any]:
        """Read an item."""
        return {"id": item_id, "limit": limit, "fields": fields,
                "stock": await ctx.store.get(str(item_id))}

    @shop.put("/tags/{name}", scopes=["shop:write"])
    async def tag(name: str, body: Tag, ctx: Any) -> Tag:
        """Tag something."""
        await ctx.store.put(f"tag:{name}", msgspec.to_builtins(body))
        return body

    @shop.delete("/tags/{name}", scopes=["shop:write"])
    async def untag(name: str, ctx: Any) -> None:
        """Untag."""
        await ctx.store.delete(f"tag:{name}")

    return Stack("fuzz", services=[notes_service(), shop], auth=auth())


@pytest.fixture(scope="module")
def served_url() -> Iterator[str]:
    ready = threading.Event()
    stop: dict[str, Any] = {}
    box: dict[str, str] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        stop["set"] = lambda: loop.call_soon_threadsafe(stopping.set)
        async with serving(fuzz_stack().asgi(engine="memory")) as url:
            box["url"] = url
            ready.set()
            await stopping.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    yield box["url"]
    stop["set"]()
    thread.join(30)


@pytest.fixture(scope="module")
def api_schema(served_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{served_url}/openapi.json")


def _operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def _fuzz(api_schema: Any, examples: int, check: Any, mode: Any = GenerationMode.POSITIVE) -> int:
    """Run ``check(case)`` on generated cases of every operation; returns how many operations."""
    operations = _operations(api_schema)
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (
            operation.path_parameters or operation.query or operation.body
        ):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            check(case)

        run()
    return len(operations)


# schemathesis's own pytest plugin does not load under pytest 9 yet ("Function has no _nodeid"),
# so each operation's strategy drives a plain hypothesis test.


@pytest.mark.timeout(300)  # hypothesis drives every operation of the API
def test_no_input_makes_a_server_error(api_schema: Any) -> None:
    def check(case: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
        response = case.call()
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"][0].startswith("application/json")
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    seen: dict[int, int] = {}
    assert _fuzz(api_schema, 40, check) == 7
    assert 200 in seen and 201 in seen  # the handlers ran
    seen.clear()
    _fuzz(api_schema, 40, check, GenerationMode.NEGATIVE)
    assert 422 in seen  # and invalid input was refused, naming the field, never a 5xx


def test_without_a_token_everything_protected_is_401(api_schema: Any) -> None:
    def check(case: Any) -> None:
        case.headers = {k: v for k, v in (case.headers or {}).items()
                        if k.lower() != "authorization"}
        response = case.call()
        assert response.status_code < 500
        if case.operation.definition.raw.get("security"):
            assert response.status_code == 401, (case.method, case.formatted_path)

    _fuzz(api_schema, 10, check)
