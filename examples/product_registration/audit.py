"""Audit: a tap on the bus that counts every event by type and keeps each flow's trail.

It shows the other side of choreography: a new consumer is one decorator, and no producer
changes. The trail follows ``correlationid``, which the runtime carries from each event to the
events its handlers emit (with ``causationid`` naming the direct cause).
"""

from __future__ import annotations

from setpiece import Context, Event, Service

service = Service("audit")


@service.on({"id": [{"exists": True}]})  # every event on the bus
async def record(event: Event, ctx: Context) -> None:
    count: int = await ctx.store.get(f"count:{event.type}", 0)
    await ctx.store.put(f"count:{event.type}", count + 1)
    flow = event.correlationid or event.id
    trail: list[str] = await ctx.store.get(f"trail:{flow}", [])
    await ctx.store.put(f"trail:{flow}", [*trail, f"{event.service or event.source}:{event.type}"])
