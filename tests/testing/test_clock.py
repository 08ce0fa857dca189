"""The ``clock`` fixture and ``VirtualClock`` from ``setpiece.testing`` (issue 14's contract):
stacks a test starts run on its virtual clock, and time moves only when the test says."""

from __future__ import annotations

import asyncio

from setpiece import Event, RetryPolicy, Service, Stack
from setpiece.testing import StackStarter, VirtualClock
from tests.conftest import on_setpiece_engines


def hourly_stack() -> Stack:
    reports = Service("reports")

    @reports.every(3600)
    async def hourly(event: Event) -> Event:
        return Event(type="points_awarded", data={"at": event.time[:16]})

    return Stack("shop", services=[reports])


@on_setpiece_engines
async def test_the_clock_fixture_drives_the_stacks_of_the_test(
    setpiece_stack: StackStarter, clock: VirtualClock
) -> None:
    rt = await setpiece_stack(hourly_stack())
    assert rt.clock is clock and clock.now().isoformat() == "2026-01-01T00:00:00+00:00"
    assert await rt.published() == []
    await clock.advance(3600)  # an hourly schedule fires once
    event = await rt.expect({"type": ["points_awarded"]}, timeout=5)
    assert event.data == {"at": "2026-01-01T01:00"}
    await clock.advance(2 * 3600)
    fired = await rt.published({"type": ["points_awarded"]})
    assert [e.data["at"] for e in fired] == [
        "2026-01-01T01:00", "2026-01-01T02:00", "2026-01-01T03:00"]


async def test_a_retry_backoff_of_minutes_waits_for_the_clock(
    setpiece_stack: StackStarter, clock: VirtualClock
) -> None:
    attempts: list[float] = []
    flaky = Service("flaky")

    ten_minutes = RetryPolicy(max_attempts=2, initial_delay=600, max_delay=600, jitter=0)

    @flaky.on({"type": ["t"]}, retry=ten_minutes)
    async def once_down(event: Event) -> Event | None:
        attempts.append(clock.time())
        if len(attempts) == 1:
            raise RuntimeError("down for a while")
        return Event(type="done")

    rt = await setpiece_stack(Stack("s", services=[flaky]))
    await rt.publish(Event(type="t", source="x"))
    await clock.advance(599)
    assert await rt.published({"type": ["done"]}) == [] and len(attempts) == 1
    await clock.advance(1)
    await rt.expect({"type": ["done"]}, timeout=5)
    assert attempts[1] - attempts[0] == 600


def test_the_public_contract() -> None:
    async def main() -> None:
        clock = VirtualClock(start="2026-01-01T00:00:00Z")
        async with hourly_stack().start(engine="memory", clock=clock) as rt:
            await clock.advance(3600)
            event = await rt.expect({"type": ["points_awarded"]}, timeout=5)
            assert event.data == {"at": "2026-01-01T01:00"}

    asyncio.run(main())
