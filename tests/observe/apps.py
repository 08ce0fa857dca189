"""Stacks the observability tests run (importing nothing of OpenTelemetry or Prometheus)."""

from __future__ import annotations

from typing import Any

from setpiece import Bus, Event, RetryPolicy, Rule, Service, Stack, Stream


def shop(**kw: Any) -> Stack:
    orders = Service("orders")
    billing = Service("billing")

    @orders.on({"type": ["order_placed"]})
    async def place(event: Event, ctx: Any) -> Event:
        await ctx.store.put(event.data["id"], "placed")
        return Event(type="order_accepted", data=event.data)

    @billing.on({"type": ["order_accepted"]},
                retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=0))
    async def bill(event: Event, ctx: Any) -> None:
        if event.data["id"].endswith("7"):
            raise RuntimeError("card declined")

    archive = Stream("archive", partitions=2)
    bus = Bus("default", rules=[Rule("keep", {"type": ["order_placed"]}, targets=[archive])])
    return Stack("shop", services=[orders, billing], buses=[bus], streams=[archive], **kw)


def slo_shop() -> Stack:
    """``shop`` with SLOs on a handler and on a route (tests of ``setpiece slo``)."""
    from setpiece import SLO, Observability

    base = shop()
    front = Service("front")

    @front.get("/orders/{id}")
    async def read(id: str) -> dict[str, str]:
        return {"id": id}

    return Stack("shop", services=[*base.services.values(), front],
                 buses=list(base.buses.values()), streams=list(base.streams.values()),
                 observe=Observability(slos={
                     "billing.bill": SLO(objective=0.9),
                     "GET /orders/{id}": SLO(objective=0.99, latency=5.0),
                 }))
