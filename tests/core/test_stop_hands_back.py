"""A stop does not wait out a retry's backoff: the batch is handed back, uncommitted.

A delivery that failed and waits for its next attempt is not work in flight, it is waiting. The
runtime's stop (a worker's SIGTERM, a ``setpiece dev`` reload) hands its batch back at once, and
the next runtime on the same engine reads it again from the committed offset, so the reload's time
does not depend on the retries in flight. A handler that is *running* still gets the grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from setpiece import Context, Event, RetryPolicy, Service, Stack
from setpiece.runtime.config import RuntimeConfig

HOUR = 3600.0


def build(calls: list[str], *, fail: bool, slow: asyncio.Event | None = None,
          failed: asyncio.Event | None = None) -> Stack:
    svc = Service("svc")

    @svc.on({"type": ["job"]}, retry=RetryPolicy(max_attempts=5, initial_delay=HOUR,
                                                  max_delay=HOUR, jitter=0))
    async def work(event: Event, ctx: Context) -> None:
        calls.append(event.id)
        if slow is not None:
            slow.set()
            await asyncio.sleep(0.2)  # running: finishes within the grace period
        if fail:
            if failed is not None:
                failed.set()
            raise RuntimeError("the partner is down")
        await ctx.store.put(event.id, "done")

    @svc.on({"type": ["other"]})
    async def other(event: Event, ctx: Context) -> None:
        await ctx.store.put(event.id, "done")

    return Stack("handback", services=[svc])


def config() -> RuntimeConfig:
    # A grace period far longer than any test: waiting it out would time the test out.
    return RuntimeConfig(member="w", shutdown_grace=HOUR, heartbeat_interval=0.1,
                         session_timeout=1.0)


def test_stop_hands_back_a_retry_waiting_on_its_backoff(
    tmp_path: Path, run: Callable[[Coroutine[Any, Any, Any]], Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    async def main() -> None:
        calls: list[str] = []
        failed = asyncio.Event()
        async with build(calls, fail=True, failed=failed).start(engine=url,
                                                                 config=config()) as rt:
            [job] = await rt.publish_many([Event(type="job", source="t")])
            await failed.wait()  # the first attempt failed; the next waits an hour
            [consumer] = [c for c in rt.consumers if c.label == "svc.work"]
            assert await consumer.lag() == 1
            await asyncio.wait_for(rt.stop(), 30)  # not the hour of backoff, nor the grace
            assert await consumer.lag() == 1  # handed back, uncommitted
            assert await rt.dead_letters() == []

        again: list[str] = []
        async with build(again, fail=False).start(engine=url, config=config()) as rt:
            await rt.drain(timeout=30)
            assert again == [job.id]  # read again by the next runtime, and done
            assert await rt.store("svc").get(job.id) == "done"

    run(main())


def test_a_running_handler_still_finishes_within_the_grace(
    tmp_path: Path, run: Callable[[Coroutine[Any, Any, Any]], Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    async def main() -> None:
        calls: list[str] = []
        running = asyncio.Event()
        async with build(calls, fail=False, slow=running).start(engine=url,
                                                                 config=config()) as rt:
            [job] = await rt.publish_many([Event(type="job", source="t")])
            await running.wait()
            await rt.stop()
            [consumer] = [c for c in rt.consumers if c.label == "svc.work"]
            assert await consumer.lag() == 0  # it finished and committed
            assert await rt.store("svc").get(job.id) == "done"

    run(main())
