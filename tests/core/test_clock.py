"""The runtime's clock: a VirtualClock runs schedules, retries' backoff and durable timers
(workflow Waits, timeouts, heartbeats) when a test moves it, in order, without sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from setpiece import ConfigError, Event, RetryPolicy, Service, Stack, Workflow
from setpiece.clock import SystemClock, VirtualClock
from tests.conftest import ENGINES, fresh_urls

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]  # (engine URL, store URL)
START = "2026-01-01T00:00:00Z"
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@pytest.fixture(params=["memory", "file", *ENGINES[1:]])
def urls(request: pytest.FixtureRequest, tmp_path: Any) -> Urls:
    """SQLite in memory, an SQLite file and (marked servers) NATS + PostgreSQL."""
    if request.param == "memory":
        return "memory", None
    if request.param == "file":
        return f"sqlite:///{tmp_path / 'clock.db'}", None
    return fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))


# ------------------------------------------------------------------------------ the clock


def test_virtual_clock_starts_where_told_and_refuses_bad_starts() -> None:
    assert VirtualClock(START).time() == T0
    assert VirtualClock("2026-01-01T00:00:00").time() == T0  # no zone: UTC
    assert VirtualClock(datetime(2026, 1, 1, tzinfo=UTC)).time() == T0
    assert VirtualClock(T0).time() == T0
    assert repr(VirtualClock(START)) == "VirtualClock('2026-01-01T00:00:00Z')"
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        VirtualClock("yesterday")
    with pytest.raises(ValueError, match="not a finite time"):
        VirtualClock(float("nan"))
    with pytest.raises(TypeError, match="not a bool"):
        VirtualClock(True)  # type: ignore[arg-type]


def test_sleepers_wake_in_order_of_their_due_time_and_the_clock_never_goes_back(run: Run) -> None:
    async def main() -> None:
        clock = VirtualClock(START)
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.time() - T0))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in
                 (("c", 30), ("a", 10), ("b", 20), ("late", 100))]
        await asyncio.sleep(0)
        assert clock.sleepers == 4 and clock.next_due() == T0 + 10
        await clock.advance(30)
        assert woke == [("a", 10), ("b", 20), ("c", 30)]
        assert clock.time() == T0 + 30
        with pytest.raises(ValueError, match="a clock never goes back"):
            await clock.advance_to(T0)
        with pytest.raises(ValueError, match="not a number of seconds"):
            await clock.advance(-1)
        await clock.advance_to("2026-01-01T00:01:40Z")
        assert woke[-1] == ("late", 100)
        await asyncio.gather(*tasks)

    run(main())


def test_wait_returns_on_the_event_or_after_the_timeout_on_the_clock(run: Run) -> None:
    async def main() -> None:
        for clock in (VirtualClock(START), SystemClock()):
            event = asyncio.Event()
            event.set()
            assert await clock.wait(event, 5) is True
        clock = VirtualClock(START)
        event = asyncio.Event()
        waiting = asyncio.create_task(clock.wait(event, 60))
        await asyncio.sleep(0)
        await clock.advance(59)
        assert not waiting.done()
        await clock.advance(1)
        assert await waiting is False
        waiting = asyncio.create_task(clock.wait(event, 60))
        await asyncio.sleep(0)
        event.set()
        assert await waiting is True
        assert clock.sleepers == 0  # the timeout's sleeper went with it

    run(main())


def test_start_refuses_what_is_not_a_clock() -> None:
    with pytest.raises(ConfigError, match=r"clock=\.\.\.\): a setpiece Clock"):
        Stack("s").start("memory", clock=object())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the runtime


def test_an_hourly_schedule_fires_once_per_hour_advanced(run: Run, urls: Urls) -> None:
    svc = Service("reports")
    fired: list[float] = []

    @svc.every(3600)
    async def hourly(event: Event) -> Event:
        fired.append(datetime.fromisoformat(event.time.replace("Z", "+00:00")).timestamp())
        return Event(type="report_made", data={"n": len(fired)})

    stack = Stack("clocked", services=[svc])

    async def main() -> None:
        clock = VirtualClock(START)
        async with stack.start(urls[0], store=urls[1], clock=clock) as rt:
            await clock.advance(3599)
            assert fired == []
            await clock.advance(1)
            assert fired == [T0 + 3600]
            await clock.advance(3 * 3600)
            assert fired == [T0 + 3600 * n for n in (1, 2, 3, 4)]
            await rt.drain()

    run(main())


def test_a_cron_schedule_follows_the_virtual_calendar(run: Run, urls: Urls) -> None:
    svc = Service("nightly")
    fired: list[str] = []

    @svc.cron("30 2 * * *")  # 02:30 UTC every day
    async def job(event: Event) -> None:
        fired.append(event.time[:16])

    async def main() -> None:
        clock = VirtualClock(START)
        async with Stack("cron", services=[svc]).start(urls[0], store=urls[1], clock=clock):
            await clock.advance(3 * 86400)
        assert fired == ["2026-01-01T02:30", "2026-01-02T02:30", "2026-01-03T02:30"]

    run(main())


def test_a_retry_backoff_of_minutes_waits_on_the_clock(run: Run, urls: Urls) -> None:
    svc = Service("flaky")
    attempts: list[float] = []
    clock = VirtualClock(START)

    @svc.on({"type": ["ping"]}, retry=RetryPolicy(max_attempts=3, initial_delay=300,
                                                  multiplier=2, max_delay=3600, jitter=0))
    async def ping(event: Event) -> None:
        attempts.append(clock.time() - T0)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    async def main() -> None:
        stack = Stack("retries", services=[svc])
        async with stack.start(urls[0], store=urls[1], clock=clock) as rt:
            await rt.publish(Event(type="ping", source="test"))
            await clock.advance(0)
            assert attempts == [0]
            await clock.advance(299)
            assert attempts == [0]
            await clock.advance(1)
            assert attempts == [0, 300]
            await clock.advance(600)  # the second retry waits twice as long
            assert attempts == [0, 300, 900]
            await rt.drain()
            assert await rt.dead_letters() == []

    run(main())


def test_a_day_long_workflow_wait_and_a_timeout(run: Run, urls: Urls) -> None:
    waits = Workflow("wait_a_day", {
        "StartAt": "Wait", "States": {
            "Wait": {"Type": "Wait", "Seconds": 86400, "Next": "Done"},
            "Done": {"Type": "Pass", "Result": "ok", "End": True},
        }})
    stuck = Workflow("times_out", {
        "StartAt": "Wait", "TimeoutSeconds": 3600, "States": {
            "Wait": {"Type": "Wait", "Seconds": 7200, "End": True},
        }})
    stack = Stack("waits", workflows=[waits, stuck])

    async def main() -> None:
        clock = VirtualClock(START)
        async with stack.start(urls[0], store=urls[1], clock=clock) as rt:
            day = await rt.start_execution("wait_a_day", {})
            hour = await rt.start_execution("times_out", {})
            await clock.advance(3599)
            assert (await rt.describe_execution(hour)).status == "RUNNING"
            await clock.advance(1)
            assert (await rt.describe_execution(hour)).status == "TIMED_OUT"
            await clock.advance(86400 - 3601)
            assert (await rt.describe_execution(day)).status == "RUNNING"
            await clock.advance(1)
            done = await rt.describe_execution(day)
            assert done.status == "SUCCEEDED" and done.output == "ok"
            assert done.stop_date is not None
            assert done.stop_date.timestamp() == pytest.approx(T0 + 86400, abs=1)

    run(main())
