"""Event-sourced commands for the crash test, run as their own process (see test_crash.py).

    python crash_app.py ENGINE init [STORE]    # create the streams and groups, then exit
    python crash_app.py ENGINE run [STORE]     # process until killed
    python crash_app.py ENGINE drain [STORE]   # process until everything is handled, exit 0

Every ``deposit_requested`` event (spread over many partition keys) commands one of a few hot
accounts through ``ctx.aggregate``: several workers run at once, so commands on one account
race between processes, and each is killed at random moments.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from setpiece import Context, Event, RuntimeConfig, Service, Stack
from setpiece.sourcing import Aggregate, Snapshots


def evolve(state: dict[str, Any], event: Event) -> dict[str, Any]:
    return {"balance": state["balance"] + event.data["amount"], "count": state["count"] + 1}


def account() -> Aggregate:
    return Aggregate(
        "account", initial=lambda: {"balance": 0, "count": 0},
        decide=lambda state, command: [Event(type="deposited", data=command)],
        evolve=evolve, snapshots=Snapshots(every=25),
    )


def build() -> Stack:
    teller = Service("teller")

    @teller.on({"type": ["deposit_requested"]}, concurrency=8)
    async def deposit(event: Event, ctx: Context) -> None:
        await ctx.aggregate("account", event.data["account"]).execute(
            {"item": event.data["item"], "amount": event.data["amount"]})

    return Stack("crash", services=[teller], aggregates=[account()])


async def main(engine: str, mode: str, store: str | None) -> None:
    config = RuntimeConfig(batch_size=32, heartbeat_interval=0.1, session_timeout=0.5)
    async with build().start(engine=engine, store=store, config=config) as rt:
        if mode == "run":
            print("ready", flush=True)
            await asyncio.Event().wait()
        elif mode == "drain":
            await rt.drain(timeout=120)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
