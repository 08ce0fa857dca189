"""Windowed aggregates: every window kind's boundaries, grace, late and out-of-order events,
final results emitted once, reads while open, idle partitions, and bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from setpiece import ConfigError, Event, Stack, Stream
from setpiece.views import Aggregate, Hopping, Session, Sliding, Tumbling
from setpiece.views.declarations import Window
from tests.conftest import ENGINES
from tests.views.helpers import at, ev, read_all

ticks = Stream("ticks", partitions=1)
results = Stream("results", partitions=1)


def counting(window: Window, **kw: Any) -> Aggregate:
    return Aggregate("agg", ticks, key=lambda e: e.partitionkey, window=window,
                     initial=lambda: 0, add=lambda acc, e: acc + e.data.get("n", 1),
                     emit_to=results, **kw)


def stack_of(agg: Aggregate) -> Stack:
    return Stack("w", streams=[ticks, results], views=[agg])


async def feed(rt: Any, events: list[Event]) -> None:
    for event in events:  # one by one: stream time moves event by event
        await rt.publish(event, stream="ticks")
    await rt.drain()


async def finals(rt: Any) -> list[tuple[str, str, str, Any]]:
    out = []
    for raw in await read_all(rt.engine, "results"):
        d = raw["data"]
        out.append((d["key"], d["start"], d["end"], d["value"]))
    return out


def w(start: float, end: float, value: Any) -> tuple[str, str, Any]:
    return at(start), at(end), value


@pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)
def test_tumbling_boundaries_grace_and_one_final_result_per_window(
    run: Any, engine_urls: tuple[str, str | None]
) -> None:
    agg = counting(Tumbling(10, grace=5))

    async def main() -> None:
        url, store = engine_urls
        async with stack_of(agg).start(engine=url, store=store) as rt:
            # 0 and 9.999 in [0, 10); 10 starts [10, 20); 14 is within grace of [0, 10).
            await feed(rt, [ev("a", 0), ev("a", 9.999), ev("a", 10), ev("a", 14.999, n=10)])
            view = rt.view("agg")
            assert await view.windows("a") == [w(0, 10, 2), w(10, 20, 11)]  # open, readable
            await feed(rt, [ev("a", 3, n=100)])  # out of order, within grace: counted
            assert await finals(rt) == []
            await feed(rt, [ev("a", 15)])  # stream time 15 = 10 + grace 5: [0, 10) closes
            assert await finals(rt) == [("a", at(0), at(10), 102)]
            await feed(rt, [ev("a", 9)])  # too late: counted and dead-lettered
            assert await view.late() == 1
            [letter] = await rt.dead_letters()
            assert "late event" in letter.error and "its window closed" in letter.error
            assert letter.event is not None and letter.event.time == at(9)
            await feed(rt, [ev("a", 40), ev("b", 41)])
            assert await finals(rt) == [("a", at(0), at(10), 102), ("a", at(10), at(20), 12)]
            assert await view.windows("a") == [w(0, 10, 102), w(10, 20, 12), w(40, 50, 1)]
            [raw] = (await read_all(rt.engine, "results"))[:1]
            assert raw["type"] == "view.agg" and raw["time"] == at(10)

    run(main())


def test_hopping_windows_hold_an_event_in_each_window_covering_it(run: Any) -> None:
    agg = counting(Hopping(10, 5))

    async def main() -> None:
        async with stack_of(agg).start(engine="memory") as rt:
            await feed(rt, [ev("a", 0), ev("a", 4.999), ev("a", 5), ev("a", 12)])
            assert await rt.view("agg").windows("a") == [
                w(-5, 5, 2), w(0, 10, 3), w(5, 15, 2), w(10, 20, 1)]
            assert await finals(rt) == [("a", at(-5), at(5), 2), ("a", at(0), at(10), 3)]

    run(main())


def test_sliding_windows_end_at_each_event_and_hold_what_came_within_size(run: Any) -> None:
    agg = counting(Sliding(10, grace=2))

    async def main() -> None:
        async with stack_of(agg).start(engine="memory") as rt:
            await feed(rt, [ev("a", 0), ev("a", 5), ev("a", 10), ev("a", 9)])  # 9: in grace
            assert await rt.view("agg").windows("a") == [
                w(-10, 0, 1), w(-5, 5, 2), w(-1, 9, 3), w(0, 10, 4)]
            assert await finals(rt) == [("a", at(-10), at(0), 1), ("a", at(-5), at(5), 2)]
            await feed(rt, [ev("a", 30)])
            assert [f[1:] for f in await finals(rt)] == [
                w(-10, 0, 1), w(-5, 5, 2), w(-1, 9, 3), w(0, 10, 4)]
            await feed(rt, [ev("a", 20)])  # 20 + grace 2 <= 30: late
            assert await rt.view("agg").late() == 1

    run(main())


def test_sessions_grow_merge_and_close_after_the_gap(run: Any) -> None:
    agg = counting(Session(10, grace=10), merge=lambda a, b: a + b)

    async def main() -> None:
        async with stack_of(agg).start(engine="memory") as rt:
            await feed(rt, [ev("a", 0), ev("a", 8), ev("a", 25), ev("a", 16.5)])
            # 16.5 is within 10 s of 8 and of 25: the two sessions become one
            assert await rt.view("agg").windows("a") == [w(0, 25, 4)]
            await feed(rt, [ev("b", 44.999)])
            assert await finals(rt) == []
            await feed(rt, [ev("b", 45)])  # a: last 25 + gap 10 + grace 10 <= 45: closes
            assert await finals(rt) == [("a", at(0), at(25), 4)]
            await feed(rt, [ev("a", 36)])  # within the gap of 25, but that session closed
            assert await rt.view("agg").windows("a") == [w(0, 25, 4), w(36, 36, 1)]

    run(main())


def test_sessions_without_merge_dead_letter_the_event_that_joins_two(run: Any) -> None:
    agg = counting(Session(10, grace=10))

    async def main() -> None:
        async with stack_of(agg).start(engine="memory") as rt:
            await feed(rt, [ev("a", 0), ev("a", 15), ev("a", 8)])
            assert await rt.view("agg").windows("a") == [w(0, 0, 1), w(15, 15, 1)]
            [letter] = await rt.dead_letters()
            assert "need merge=" in letter.error

    run(main())


def test_bad_input_is_dead_lettered_with_its_reason(run: Any) -> None:
    agg = Aggregate("agg", ticks, key=lambda e: e.data["k"], window=Tumbling(10),
                    initial=lambda: 0, add=lambda acc, e: acc + 1 / e.data["n"])

    async def main() -> None:
        async with stack_of(agg).start(engine="memory") as rt:
            await feed(rt, [
                Event(type="t", source="s", time=at(1), data={"k": "a", "n": 1}),
                Event(type="t", source="s", time=at(2), data={"k": "a", "n": 0}),  # 1/0
                Event(type="t", source="s", time=at(3), data={"n": 1}),  # no key
                Event(type="t", source="s", time=at(4), data={"k": ["a"], "n": 1}),
            ])
            raw = msgspec.json.encode({"type": "t", "source": "s", "id": "x", "specversion":
                                       "1.0", "time": "yesterday", "data": {"k": "a"}})
            await rt.engine.append("ticks", [(None, raw), (None, b"not json")])
            await rt.drain()
            errors = sorted(d.error for d in await rt.dead_letters())
            assert len(errors) == 5, errors
            assert any("the fold raised ZeroDivisionError" in e for e in errors)
            assert any("key function raised KeyError" in e for e in errors)
            assert any("returned list, not a string" in e for e in errors)
            assert any("no usable time ('yesterday')" in e for e in errors)
            assert any("DecodeError" in e or "JSON" in e for e in errors)
            assert await rt.view("agg").windows("a") == [w(0, 10, 1.0)]

    run(main())


def test_an_idle_partition_closes_its_windows_after_the_timeout(run: Any) -> None:
    from setpiece.clock import VirtualClock

    agg = counting(Tumbling(10), idle_timeout=60)
    clock = VirtualClock(at(0))

    async def main() -> None:
        async with stack_of(agg).start(engine="memory", clock=clock) as rt:
            await feed(rt, [ev("quiet", 1), ev("quiet", 2)])
            await clock.advance(30)
            await rt.drain()
            assert await finals(rt) == []  # idle for 30 s of the clock: still open
            await clock.advance(31)
            for _ in range(200):  # the view looks at its clock between turns
                if await finals(rt):
                    break
                await asyncio.sleep(0.05)
            assert await finals(rt) == [("quiet", at(0), at(10), 2)]
            await feed(rt, [ev("quiet", 5)])  # stream time moved to the clock: late
            assert await rt.view("agg").late() == 1

    run(main())


def test_reading_a_view_of_the_wrong_kind_is_a_clear_error(run: Any) -> None:
    agg = counting(Tumbling(10))

    async def main() -> None:
        async with stack_of(agg).start(engine="memory") as rt:
            with pytest.raises(ConfigError, match="is an aggregate"):
                await rt.view("agg").get("a")
            with pytest.raises(ConfigError, match="view key: must be a string"):
                await rt.view("agg").windows(3)  # type: ignore[arg-type]

    run(main())


def test_window_declarations_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"Tumbling.size: must be > 0"):
        Tumbling(0)
    with pytest.raises(ConfigError, match=r"Hopping\.advance: must not exceed size"):
        Hopping(5, 10)
    with pytest.raises(ConfigError, match=r"Session\.grace: must be >= 0"):
        Session(5, grace=-1)
    with pytest.raises(ConfigError, match="window= must be Tumbling"):
        Aggregate("x", ticks, key=lambda e: "k", window=10,  # type: ignore[arg-type]
                  initial=lambda: 0, add=lambda a, e: a)
    with pytest.raises(ConfigError, match="emit_to stream 'nowhere' is not declared"):
        Stack("s", streams=[ticks], views=[Aggregate(
            "x", ticks, key=lambda e: "k", window=Tumbling(1), initial=lambda: 0,
            add=lambda a, e: a, emit_to=Stream("nowhere"))])


def test_redrives_aimed_at_other_consumers_and_replays_are_not_folded_again(run: Any) -> None:
    from setpiece import Bus, RetryPolicy, Service

    bus = Bus("events")
    count = Aggregate("count", bus, pattern={"type": ["tick"]}, key=lambda e: e.partitionkey,
                      window=Tumbling(60), initial=lambda: 0, add=lambda n, e: n + 1)
    svc = Service("picky")

    @svc.on({"type": ["tick"]}, bus="events", retry=RetryPolicy(max_attempts=1))
    async def picky(event: Event) -> None:
        raise RuntimeError("no")

    stack = Stack("r", services=[svc], buses=[bus], views=[count])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish(ev("a", 1), bus="events")
            await rt.drain()
            assert len(await rt.dead_letters()) == 1
            assert await rt.redrive() == 1  # back onto the bus, aimed at the handler alone
            await rt.drain()
            await rt.replay(bus="events", start=0)  # every archived event, once more
            await rt.drain()
            assert await rt.view("count").windows("a") == [w(0, 60, 1)]

    run(main())
