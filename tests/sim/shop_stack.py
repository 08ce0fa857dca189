"""A small stack for the simulator's tests: routes, a ctx.call, events routed by patterns, a
stream with partitions and two consumer groups."""

from __future__ import annotations

from typing import Any

from setpiece import Bus, Event, Service, Stack, Stream

orders = Service("orders")
billing = Service("billing")
shipping = Service("shipping")
analytics = Service("analytics")
ledger = Stream("ledger", partitions=8)


@orders.post("/orders")
async def place(body: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {}


@billing.post("/charges")
async def charge(body: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {}


@shipping.on({"detail-type": ["OrderPlaced"], "detail": {"express": [True]}})
async def ship_express(event: Event, ctx: Any) -> None:
    return None


@shipping.on({"detail-type": ["OrderCancelled"]})
async def cancel(event: Event, ctx: Any) -> None:
    return None


@analytics.consume("ledger")
async def count(event: Event, ctx: Any) -> None:
    return None


@billing.consume("ledger", name="reconcile")
async def reconcile(event: Event, ctx: Any) -> None:
    return None


bus = Bus("default")
bus.rule("to-ledger", {"detail-type": ["OrderPlaced"]}, ledger)

stack = Stack("shop", services=[orders, billing, shipping, analytics], buses=[bus],
              streams=[ledger])

COSTS: dict[str, Any] = {
    "defaults": {"instances": 3, "latency_ms": 2},
    "services": {"orders": {"instances": 6}},
    "nodes": {
        "orders.place": {"latency_ms": 3, "calls": ["billing.charge"],
                         "emits": [{"source": "shop", "type": "OrderPlaced",
                                    "data": {"express": True}}]},
        "billing.charge": {"latency_ms": 1, "error_rate": 0.0},
    },
}
