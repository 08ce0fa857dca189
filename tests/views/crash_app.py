"""A stack of views for the views crash test, run as its own process (see test_crash.py).

    python crash_app.py ENGINE init|run|drain [STORE]

A table of profiles, a stream-table join of orders against it, and a tumbling count-and-sum of
orders per customer, each final result emitted onto ``totals``.
"""

from __future__ import annotations

import asyncio
import sys

from setpiece import RuntimeConfig, Stack, Stream
from setpiece.views import Aggregate, Join, Table, Tumbling

PARTITIONS = 4


def build() -> Stack:
    profiles = Stream("profiles", partitions=PARTITIONS)
    orders = Stream("orders", partitions=PARTITIONS)
    enriched = Stream("enriched", partitions=PARTITIONS)
    totals = Stream("totals", partitions=PARTITIONS)
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    join = Join("enrich", orders, table, emit_to=enriched, how="left")
    agg = Aggregate("per_customer", orders, key=lambda e: e.partitionkey, window=Tumbling(10),
                    initial=lambda: [0, 0],
                    add=lambda acc, e: [acc[0] + 1, acc[1] + e.data["amount"]],
                    emit_to=totals)
    return Stack("crash-views", streams=[profiles, orders, enriched, totals],
                 views=[table, join, agg])


async def main(engine: str, mode: str, store: str | None) -> None:
    url = engine if "://" in engine else f"sqlite:///{engine}"
    config = RuntimeConfig(heartbeat_interval=0.1, session_timeout=0.5)
    stack = build()
    if mode == "init":
        from setpiece._assembly import new_runtime
        from setpiece.engine import open_engine

        opened = await open_engine(url, store=store)
        try:
            await new_runtime(stack, opened, config).provision()
        finally:
            await opened.close()
        return
    async with stack.start(engine=url, store=store, config=config) as rt:
        if mode == "run":
            print("ready", flush=True)
            await asyncio.Event().wait()
        elif mode == "drain":
            await rt.drain(timeout=300)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
