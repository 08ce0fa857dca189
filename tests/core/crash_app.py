"""A small two-hop stack for the crash test, run as its own process (see test_crash.py).

    python crash_app.py ENGINE init [STORE]    # create the streams and groups, then exit
    python crash_app.py ENGINE run [STORE]     # process until killed
    python crash_app.py ENGINE drain [STORE]   # process until everything is handled, then exit 0

ENGINE is an engine URL (``sqlite:///…``, ``nats://…``) or the path of an SQLite file; STORE is
the PostgreSQL URL the NATS engine needs.
"""

from __future__ import annotations

import asyncio
import sys

from setpiece import Context, DrainTimeout, Event, Runtime, RuntimeConfig, Service, Stack


def build() -> Stack:
    counter = Service("counter")

    @counter.on({"type": ["work"]})
    async def count(event: Event, ctx: Context) -> list[Event]:
        key, item = event.data["customer"], event.data["item"]
        await ctx.store.put(key, await ctx.store.get(key, 0) + 1)
        out = [Event(type="done", data={"item": item})]
        last = await ctx.store.get(f"order:{key}", -1)  # a customer's items come in order
        if item <= last:
            out.append(Event(type="disorder", data={"customer": key, "item": item,
                                                    "after": last}))
        await ctx.store.put(f"order:{key}", max(item, last))
        return out

    tally = Service("tally")

    @tally.on({"type": ["done"]})
    async def record(event: Event, ctx: Context) -> None:
        key = f"item:{event.data['item']}"
        await ctx.store.put(key, await ctx.store.get(key, 0) + 1)

    return Stack("crash", services=[counter, tally])


async def main(engine: str, mode: str, store: str | None) -> None:
    url = engine if "://" in engine else f"sqlite:///{engine}"
    config = RuntimeConfig(batch_size=64, heartbeat_interval=0.1, session_timeout=0.5)
    async with build().start(engine=url, store=store, config=config) as rt:
        if mode == "run":
            print("ready", flush=True)
            await asyncio.Event().wait()
        elif mode == "drain":
            try:
                await rt.drain(timeout=240)
            except DrainTimeout:
                await _say_where_it_stands(rt)
                raise


async def _say_where_it_stands(rt: Runtime) -> None:
    """On stderr, for the test's failure: each group behind, per partition, its committed
    offset, the log's end, and what a read at the committed offset returns now."""
    for consumer in rt.consumers:
        ends = await rt.engine.end_offsets(consumer.stream)
        committed = await rt.engine.committed(consumer.group, consumer.stream)
        for partition, end in enumerate(ends):
            at = committed.get(partition, 0)
            if at < end:
                found = await rt.engine.read(consumer.stream, partition, at, 5)
                print(f"{consumer.group} {consumer.stream}[{partition}]: committed {at}, end "
                      f"{end}, owned here {partition in consumer.owned}, busy {consumer.busy}, "
                      f"a read at {at} gives {[r.offset for r in found]}",
                      file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
