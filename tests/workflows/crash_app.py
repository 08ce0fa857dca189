"""Durable workflows for the crash test, run as their own process (see test_crash_durable.py).

    python crash_app.py DB_PATH LOG_PATH init     # create everything, start the executions
    python crash_app.py DB_PATH LOG_PATH run      # work until killed
    python crash_app.py DB_PATH LOG_PATH finish   # work until every execution ended, exit 0

Three workflows: ``waiter`` (Wait states, then a service task), ``mapper`` (a Map over 100
items, each a service task), ``asker`` (a task token sent out in an event and answered by
another service). Every task's effect is a counter in a service store, and every call is also
logged to LOG_PATH (outside the engine), so the test tells calls from committed effects.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from setpiece import Context, Event, RuntimeConfig, Service, Stack, Workflow

WAITERS = 12
ITEMS = 100


def build(log_path: str) -> Stack:
    def logged(what: str) -> None:
        with open(log_path, "a") as f:
            f.write(what + "\n")

    ledger = Service("ledger")

    async def bump(ctx: Context, key: str) -> int:
        n = await ctx.store.get(key, 0) + 1
        await ctx.store.put(key, n)
        return n

    @ledger.task()
    async def record(event: Event, ctx: Context) -> Any:
        logged(f"record {event.data['who']}")
        await bump(ctx, f"waiter:{event.data['who']}")
        await ctx.publish(Event(type="recorded", data={"who": event.data["who"]}))
        return {"recorded": event.data["who"]}

    @ledger.task()
    async def tally(event: Event, ctx: Context) -> Any:
        logged(f"tally {event.data['i']}")
        await asyncio.sleep(0.01)  # some work, so that kills land mid-Map
        await bump(ctx, f"item:{event.data['i']}")
        return event.data["i"] * 2

    quotes = Service("quotes")

    @quotes.on({"type": ["quote_requested"]})
    async def quote(event: Event, ctx: Context) -> None:
        logged(f"quote {event.data['order']}")
        await bump(ctx, f"quote:{event.data['order']}")
        await ctx.send_task_success(event.data["token"], {"price": 10 * event.data["qty"]})

    waiter = Workflow("waiter", {
        "StartAt": "Hold",
        "States": {
            "Hold": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Again"},
            "Again": {"Type": "Wait", "Seconds": 1, "Next": "Record"},
            "Record": {"Type": "Task", "Resource": "service:ledger.record",
                       "Parameters": {"who.$": "$.who"}, "ResultPath": "$.result", "End": True},
        },
    })
    mapper = Workflow("mapper", {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 10,
                "ItemProcessor": {"StartAt": "Tally", "States": {"Tally": {
                    "Type": "Task", "Resource": "service:ledger.tally",
                    "Parameters": {"i.$": "$"}, "End": True}}},
                "End": True,
            }
        },
    })
    asker = Workflow("asker", {
        "StartAt": "Hold",
        "States": {
            "Hold": {"Type": "Wait", "Seconds": 2, "Next": "Ask"},
            "Ask": {"Type": "Task", "Resource": "event:quote_requested.waitForTaskToken",
                    "Parameters": {"order.$": "$.order", "qty.$": "$.qty",
                                   "token.$": "$$.Task.Token"},
                    "ResultPath": "$.quote", "TimeoutSeconds": 600, "End": True},
        },
    })
    return Stack("crashflow", services=[ledger, quotes], workflows=[waiter, mapper, asker])


async def main(path: str, log_path: str, mode: str) -> None:
    config = RuntimeConfig(batch_size=32, heartbeat_interval=0.1, session_timeout=0.5)
    async with build(log_path).start(engine=f"sqlite:///{path}", config=config) as rt:
        if mode == "init":
            for i in range(WAITERS):
                await rt.start_execution("waiter", {"who": f"w{i}", "wait": 1 + i % 5},
                                         name=f"w{i}")
            await rt.start_execution("mapper", {"items": list(range(ITEMS))}, name="m")
            for i in range(4):
                await rt.start_execution("asker", {"order": f"o{i}", "qty": i + 1},
                                         name=f"o{i}")
        elif mode == "run":
            print("ready", flush=True)
            await asyncio.Event().wait()
        else:
            for ex in await rt.executions():
                await rt.wait_execution(ex.id, timeout=120)
            await rt.drain(timeout=60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
