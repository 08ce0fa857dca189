"""Validation on publish: before anything is stored or fanned out, on every way in."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from setpiece import Bus, Event, Service, Stack
from setpiece.errors import ConfigError, SchemaError
from setpiece.schemas import Schema
from setpiece.schemas._validate import compile_validator
from tests.gateway.conftest import client

Run = Callable[[Any], Any]


class Line(msgspec.Struct):
    sku: str
    qty: int = 1


class OrderPlaced(msgspec.Struct):
    id: str
    lines: list[Line]


PAID = {"type": "object", "properties": {"id": {"type": "string"},
        "amount": {"type": "number", "minimum": 0}}, "required": ["id", "amount"]}


def shop(seen: list[Any], **buses: str) -> Stack:
    svc = Service("shop")

    @svc.on({"type": ["order_placed"]})
    async def placed(order: OrderPlaced, ctx: Any) -> Event | None:
        seen.append(order)
        if order.id == "emit-bad":  # a handler whose output does not fit
            return Event(type="order_paid", data={"id": order.id, "amount": -1})
        return None

    @svc.on({"type": ["order_paid"]}, bus="audit")
    async def audited(event: Event) -> None:
        seen.append(event)

    return Stack("shop", services=[svc], buses=[Bus("audit", validation=buses.get("audit",
                                                                                  "enforce"))],
                 schemas=[Schema("order_placed", OrderPlaced),
                          Schema("order_paid", PAID, compatibility="FULL")])


def placed(order_id: str = "o1", qty: Any = 2) -> Event:
    return Event(type="order_placed", source="test",
                 data={"id": order_id, "lines": [{"sku": "a", "qty": qty}]})


async def stored(rt: Any, stream: str = "bus.default") -> int:
    return int(sum(await rt.engine.end_offsets(stream)))


def test_publish_refuses_data_off_its_schema_and_stores_nothing(run: Run) -> None:
    seen: list[Any] = []

    async def main() -> None:
        async with shop(seen).start("memory") as rt:
            with pytest.raises(SchemaError) as info:
                await rt.publish(placed(qty="two"))
            error = info.value
            assert (error.event_type, error.path, error.rule) == (
                "order_placed", "$.lines[0].qty", "type")
            assert "'order_placed'" in str(error) and "$.lines[0].qty" in str(error)
            with pytest.raises(SchemaError, match=r"event #1: .*\$\.amount.*minimum"):
                await rt.publish_many([Event(type="order_paid", source="t",
                                             data={"id": "p", "amount": 3}),
                                       Event(type="order_paid", source="t",
                                             data={"id": "p", "amount": -3})])
            assert await stored(rt) == 0  # nothing of either batch
            await rt.publish(placed())
            await rt.publish(Event(type="unknown_type", source="t", data={"any": "thing"}))
            await rt.drain()
            assert seen == [OrderPlaced("o1", [Line("a", 2)])]

    run(main())


def test_a_handlers_event_off_its_schema_is_dead_lettered_at_once(run: Run) -> None:
    seen: list[Any] = []

    async def main() -> None:
        async with shop(seen).start("memory") as rt:
            await rt.publish(placed("emit-bad"))
            await rt.drain()
            [letter] = await rt.dead_letters()
            assert letter.attempts == 1 and letter.handler == "shop.placed"
            assert "SchemaError" in letter.error and "$.amount" in letter.error
            assert await stored(rt) == 1  # the cause only: the emitted event never was

    run(main())


@pytest.mark.parametrize("mode", ["warn", "off"])
def test_a_warn_or_off_bus_publishes_and_warn_counts(run: Run, mode: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []

    async def main() -> None:
        async with shop(seen, audit=mode).start("memory") as rt:
            bad = Event(type="order_paid", source="t", data={"id": "p"})
            await rt.publish(bad, bus="audit")
            await rt.drain()
            assert [e.id for e in seen] == [bad.id]
            counted = rt.extension("schemas").warnings["order_paid"]
            assert counted == (1 if mode == "warn" else 0)
            with pytest.raises(SchemaError):  # the default bus still enforces
                await rt.publish(bad.replace(id="x"))

    with caplog.at_level("WARNING", logger="setpiece.schemas"):
        run(main())
    assert ("required" in caplog.text) is (mode == "warn")


def test_dataversion_picks_the_version_checked(run: Run) -> None:
    v1 = {"type": "object", "properties": {"n": {"type": "integer"}}}
    v2 = {"type": "object", "properties": {"n": {"type": "number"}}}
    stack = Stack("v", schemas=[Schema("t", v1), Schema("t", v2, version=2)])

    async def main() -> None:
        async with stack.start("memory") as rt:
            await rt.publish(Event(type="t", source="s", data={"n": 1.5}))  # latest: v2
            with pytest.raises(SchemaError, match=r"version 1\) at \$\.n"):
                await rt.publish(Event(type="t", source="s", dataversion="1", data={"n": 1.5}))

    run(main())


def test_http_ingress_answers_400_naming_the_path(run: Run) -> None:
    async def main() -> None:
        async with shop([]).start("memory") as rt, client(rt.asgi()) as c:
            body = {"specversion": "1.0", "id": "e1", "source": "s", "type": "order_placed",
                    "data": {"id": 1, "lines": []}}
            r = await c.post("/events/default", content=msgspec.json.encode(body),
                             headers={"content-type": "application/cloudevents+json"})
            assert r.status_code == 400, r.text
            assert r.json()["field"] == "$.id" and "order_placed" in r.text
            assert await stored(rt) == 0

    run(main())


def test_a_256_kib_event_is_validated_and_its_error_stays_short(run: Run) -> None:
    lines = [{"sku": f"sku-{i:06d}", "qty": i} for i in range(7900)]
    data = {"id": "big", "lines": lines}
    assert 240_000 < len(msgspec.json.encode(data)) < 256 * 1024 - 1024
    for model in (OrderPlaced, Schema("x", OrderPlaced).document):
        validate = compile_validator(Schema("order_placed", model))
        validate(data)
        lines[7899] = {"sku": "s", "qty": "not a number " * 1000}
        with pytest.raises(SchemaError) as info:
            validate(data)
        assert info.value.path == "$.lines[7899].qty"
        assert len(str(info.value)) < 500
        lines[7899] = {"sku": "s", "qty": 1}

    async def main() -> None:  # and through publish, at the size limit
        async with shop([]).start("memory") as rt:
            await rt.publish(Event(type="order_placed", source="t", data=data))
            lines[0] = {"sku": 5}
            with pytest.raises(SchemaError, match=r"\$\.lines\[0\]\.sku"):
                await rt.publish(Event(type="order_placed", source="t", data=data))
            assert await stored(rt) == 1

    run(main())


@dataclasses.dataclass
class Refund:
    id: str
    amount: float


def test_dataclass_and_pydantic_models_validate_with_their_own_rules() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Shipped(pydantic.BaseModel):
        id: str
        weight: float

    for model, good, bad, path in ((Refund, {"id": "r", "amount": 2}, {"id": "r"}, "$"),
                                   (Shipped, {"id": "s", "weight": 1}, {"id": "s",
                                    "weight": "heavy"}, "$.weight")):
        validate = compile_validator(Schema("t", model))
        validate(good)
        with pytest.raises(SchemaError) as info:
            validate(bad)
        assert info.value.path == path


def test_a_json_schema_without_jsonschema_rs_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema_rs", None)
    with pytest.raises(ConfigError, match=r"pip install 'setpiece\[schemas\]'"):
        compile_validator(Schema("order_paid", PAID))
    compile_validator(Schema("order_placed", OrderPlaced))  # a Struct needs nothing more


def test_a_gateway_route_publishing_off_schema_commits_nothing(run: Run) -> None:
    svc = Service("api")

    @svc.post("/pay", public=True)
    async def pay(body: dict[str, Any], ctx: Any) -> dict[str, Any]:
        await ctx.store.put("paid", True)
        await ctx.publish(Event(type="order_paid", data=body))
        return {"ok": True}

    stack = Stack("api", services=[svc], schemas=[Schema("order_paid", PAID)])

    async def main() -> None:
        async with stack.start("memory") as rt, client(rt.asgi()) as c:
            bad = await c.post("/pay", json={"id": "p", "amount": -1})
            assert bad.status_code == 500
            assert await stored(rt) == 0 and await rt.store("api").get("paid") is None
            good = await c.post("/pay", json={"id": "p", "amount": 1})
            assert good.status_code == 200 and await stored(rt) == 1

    run(main())
