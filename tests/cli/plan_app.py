"""Three versions of one stack for the plan / apply tests (``tests.cli.plan_app:v1`` ...)."""

from __future__ import annotations

from setpiece import Bus, Context, Event, Service, Stack, Stream


def _stack(version: int) -> Stack:
    orders = Stream("orders", partitions=8 if version == 3 else 2,
                    retention=None if version == 1 else 3600.0)
    streams = [orders]
    counter = Service("counter")

    @counter.consume("orders")
    async def count(event: Event, ctx: Context) -> None:
        await ctx.store.put("n", await ctx.store.get("n", 0) + 1)

    services = [counter]
    bus = Bus("default")
    if version == 1:
        big = Stream("big", partitions=1)
        streams.append(big)
        bus.rule("big_orders", {"type": ["order"]}, big)
        audit = Service("audit")

        @audit.on({"type": ["order"]})
        async def note(event: Event) -> None:
            pass

        services.append(audit)
    else:
        streams.append(Stream("refunds", partitions=3))
    return Stack("planned", services=services, buses=[bus], streams=streams)


def v1() -> Stack:
    return _stack(1)


def v2() -> Stack:
    """orders gets a retention; big, its rule and the audit handler go; refunds comes."""
    return _stack(2)


def v3() -> Stack:
    """orders with 8 partitions: cannot change in place."""
    return _stack(3)
