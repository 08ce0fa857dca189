"""A small stack for the CLI tests (``tests.cli.shop:stack``), also run by worker subprocesses.

``SHOP_DELAY`` (seconds) slows the order counter down, so that two workers overlap in time.
"""

from __future__ import annotations

import asyncio
import os

from setpiece import Bus, Context, Event, RetryPolicy, Service, Stack, Stream

orders = Stream("orders", partitions=4)
big = Stream("big", partitions=1)

counter = Service("counter")


@counter.consume("orders")
async def count(event: Event, ctx: Context) -> Event:
    """Count each order once per customer and per item, and note which worker did it."""
    delay = float(os.environ.get("SHOP_DELAY", "0"))
    if delay:
        await asyncio.sleep(delay)
    customer, item = event.data["customer"], event.data["item"]
    await ctx.store.put(f"customer:{customer}", await ctx.store.get(f"customer:{customer}", 0) + 1)
    await ctx.store.put(f"item:{item}", await ctx.store.get(f"item:{item}", 0) + 1)
    worker = f"pid:{os.getpid()}"
    await ctx.store.put(worker, await ctx.store.get(worker, 0) + 1)
    return Event(type="order_counted", data={"item": item})


audit = Service("audit")


@audit.on({"type": ["order_counted", "order_placed"]})
async def note(event: Event, ctx: Context) -> None:
    await ctx.store.put(f"seen:{event.id}", event.type)
    await ctx.store.put("deliveries", await ctx.store.get("deliveries", 0) + 1)


flaky = Service("flaky")
HEALED = False  # tests set it to make redriven events succeed


@flaky.on({"type": ["explode"]}, retry=RetryPolicy(max_attempts=2, initial_delay=0.001))
async def fail(event: Event, ctx: Context) -> None:
    if HEALED:
        await ctx.store.put("healed", event.id)
        return
    raise ValueError("kaboom")


default = Bus("default")
default.rule(
    "big_orders", {"type": ["order_placed"], "data": {"amount": [{"numeric": [">", 100]}]}}, big
)

stack = Stack("shop", services=[counter, audit, flaky], buses=[default], streams=[orders, big])
