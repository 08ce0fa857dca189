"""``rt.expect`` and ``rt.published``: the events that flowed since a stack started, on every
bus and stream; a failed expectation lists the nearest events (setpiece.runtime.flow)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from setpiece import Bus, Context, Event, RetryPolicy, Service, Stack, Stream
from setpiece.testing import StackStarter
from tests.conftest import on_setpiece_engines


def points_stack() -> Stack:
    """``order_paid`` on the bus -> ``points_awarded`` (by a handler) -> the ``ledger`` stream
    (by a rule)."""
    loyalty = Service("loyalty")

    @loyalty.on({"type": ["order_paid"]})
    async def award(event: Event, ctx: Context) -> Event:
        return Event(type="points_awarded", data={"points": event.data["total"] // 10})

    bus = Bus("default")
    ledger = Stream("ledger", partitions=2)
    bus.rule("to_ledger", {"type": ["points_awarded"]}, ledger)
    return Stack("shop", services=[loyalty], buses=[bus], streams=[ledger])


def paid(total: int) -> Event:
    return Event(type="order_paid", source="checkout", data={"total": total}, partitionkey="c1")


@on_setpiece_engines
async def test_expect_returns_the_first_match_published_already_or_soon(
    setpiece_stack: StackStarter,
) -> None:
    rt = await setpiece_stack(points_stack())
    await rt.publish(paid(30))
    await rt.drain(timeout=10)
    first = await rt.expect({"type": ["points_awarded"]}, timeout=5)  # there already
    assert first.data == {"points": 3}

    async def later() -> None:
        await asyncio.sleep(0.2)
        await rt.publish(paid(70))

    task = asyncio.create_task(later())
    awarded = await rt.expect({"type": ["points_awarded"], "data": {"points": [7]}}, timeout=10)
    await task
    assert awarded.source == "loyalty"


@on_setpiece_engines
async def test_published_lists_what_flowed_on_every_bus_and_stream(
    setpiece_stack: StackStarter,
) -> None:
    rt = await setpiece_stack(points_stack())
    sent = await rt.publish_many([paid(10), paid(20)])
    direct = await rt.publish(Event(type="adjusted", source="ops"), stream="ledger")
    await rt.drain(timeout=10)
    everything = await rt.published()
    assert [e.type for e in everything].count("points_awarded") == 4  # the bus and the ledger
    assert {e.id for e in everything} >= {sent[0].id, sent[1].id, direct.id}
    awarded = await rt.published({"type": ["points_awarded"]})
    assert sorted(e.data["points"] for e in awarded) == [1, 1, 2, 2]
    assert await rt.published({"source": ["nobody"]}) == []


@pytest.mark.setpiece  # an async test, run by the plugin though it uses none of its fixtures
async def test_events_published_before_the_stack_started_are_not_part_of_its_flow(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    stack = points_stack()
    async with stack.start(url) as before:
        await before.publish(paid(10))
        await before.drain(timeout=10)
    async with stack.start(url) as rt:
        assert await rt.published() == []
        await rt.publish(paid(50))
        assert (await rt.expect({"type": ["points_awarded"]}, timeout=5)).data == {"points": 5}


async def test_a_redriven_event_is_not_published_again(setpiece_stack: StackStarter) -> None:
    failing = Service("failing")

    @failing.on({"type": ["t"]}, retry=RetryPolicy(max_attempts=1))
    async def boom(event: Event, ctx: Context) -> None:
        raise RuntimeError("no")

    rt = await setpiece_stack(Stack("s", services=[failing]))
    await rt.publish(Event(type="t", source="x"))
    await rt.drain(timeout=10)
    assert await rt.redrive() == 1
    await rt.drain(timeout=10)
    assert len(await rt.published({"type": ["t"]})) == 1


async def test_a_failed_expectation_shows_the_nearest_events(
    setpiece_stack: StackStarter,
) -> None:
    rt = await setpiece_stack(points_stack())
    await rt.publish_many([paid(10), paid(90)])
    await rt.drain(timeout=10)
    with pytest.raises(AssertionError) as failure:
        await rt.expect({"type": ["points_awarded"], "data": {"points": [5]},
                         "source": ["loyalty"]}, timeout=0.1)
    report = str(failure.value)
    assert "no event matching" in report and "within 0.1 s" in report
    assert "6 events since the stack started" in report
    lines = report.splitlines()[1:]
    assert len(lines) == 5
    # the awarded events (2 of 3 fields) come first, the orders (0 of 3) last
    assert all("2 of 3 fields match" in line for line in lines[:4])
    assert "on bus default" in lines[0] and "on stream ledger" in report
    assert "0 of 3 fields match" in lines[4] and "order_paid" in lines[4]


async def test_nothing_flowed_says_so(setpiece_stack: StackStarter) -> None:
    rt = await setpiece_stack(points_stack())
    with pytest.raises(AssertionError, match=r"\(0 events since the stack started\)$"):
        await rt.expect({"type": ["x"]}, timeout=0.05)


def test_expect_is_on_every_runtime_without_the_plugin() -> None:
    async def main() -> None:
        async with points_stack().start(engine="memory") as rt:
            await rt.publish(paid(40))
            assert (await rt.expect({"type": ["points_awarded"]}, timeout=5)).data["points"] == 4

    asyncio.run(main())
