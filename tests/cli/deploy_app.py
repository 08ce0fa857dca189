"""Two versions of one stack for the deployment tests (``tests.cli.deploy_app:v1`` / ``v2``).

v2 changes orders' retention, adds the streams ``audit`` and ``refunds`` (in that order of
steps: ``audit``, then orders' change, then ``refunds``) and a handler on refunds, and bumps the
counter service to version 2.
"""

from __future__ import annotations

from setpiece import Context, Event, Service, Stack, Stream


def _stack(version: int) -> Stack:
    counter = Service("counter", version=str(version))

    @counter.consume("orders")
    async def count(event: Event, ctx: Context) -> None:
        await ctx.store.put("n", await ctx.store.get("n", 0) + 1)

    streams = [Stream("orders", partitions=2, retention=None if version == 1 else 3600.0)]
    if version == 2:
        streams += [Stream("audit", partitions=1), Stream("refunds", partitions=2)]

        @counter.consume("refunds")
        async def refund(event: Event) -> None:
            pass

    return Stack("deployed", services=[counter], streams=streams)


def v1() -> Stack:
    return _stack(1)


def v2() -> Stack:
    return _stack(2)
