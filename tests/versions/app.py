"""A stack with a canary and a shadow rollout (for tests/versions/test_cli_version.py)."""

from __future__ import annotations

from setpiece import AbortPolicy, Context, Event, Rollout, Service, Stack

loyalty, loyalty_v2 = Service("loyalty"), Service("loyalty", version="2")
search, search_v2 = Service("search"), Service("search", version="7")


@loyalty.on({"type": ["purchase"]})
async def award(event: Event, ctx: Context) -> None:
    await ctx.store.put(event.partitionkey or "", "v1")


@loyalty_v2.on({"type": ["purchase"]}, name="award")
async def award_v2(event: Event, ctx: Context) -> None:
    await ctx.store.put(event.partitionkey or "", "v2")


@search.on({"type": ["purchase"]})
async def index(event: Event, ctx: Context) -> None:
    await ctx.store.put(event.id, 1)


@search_v2.on({"type": ["purchase"]}, name="index")
async def index_v7(event: Event, ctx: Context) -> None:
    await ctx.store.put(event.id, 2)


stack = Stack("versioned", services=[loyalty, search], rollouts=[
    Rollout(loyalty_v2, share=0.25, abort=AbortPolicy(margin=0.1, min_deliveries=50)),
    Rollout(search_v2, mode="shadow", abort=None),
])
