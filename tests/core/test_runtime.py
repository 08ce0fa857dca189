"""The runtime: delivery, retries, dead letters, inbox, targets.

Tests marked ``@on_engines`` run on the embedded engine (SQLite in memory) and on the production
engine (NATS JetStream + PostgreSQL, real servers, marker ``servers``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pydantic
import pytest

from setpiece import (
    Bus,
    ConfigError,
    Context,
    Drop,
    EngineError,
    Event,
    EventError,
    Retry,
    RetryPolicy,
    RuntimeConfig,
    Service,
    Stack,
    Stream,
)
from setpiece.testing import StackStarter
from tests.conftest import ENGINES, on_setpiece_engines

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]
# SQLite in memory, and NATS JetStream + PostgreSQL (marked ``servers``: real servers).
on_engines = pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)
FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01)


def loyalty_stack() -> tuple[Stack, list[str]]:
    seen: list[str] = []
    svc = Service("loyalty")

    @svc.on({"type": ["product_registered"]}, retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
    async def award(event: Event, ctx: Context) -> Event | None:
        n = await ctx.store.get(event.data["customer"], 0)
        await ctx.store.put(event.data["customer"], n + 100)
        seen.append(event.data["serial"])
        return Event(type="points_awarded", source="loyalty", data={"points": n + 100})

    audit = Service("audit")

    @audit.on({"type": ["points_awarded"]})
    async def note(event: Event, ctx: Context) -> None:
        await ctx.store.put(event.id, {"cause": event.causationid, "corr": event.correlationid})

    return Stack("rewards", services=[svc, audit]), seen


def registered(customer: str, serial: str, **kw: Any) -> Event:
    return Event(type="product_registered", source="app",
                 data={"customer": customer, "serial": serial}, partitionkey=customer, **kw)


@on_setpiece_engines
async def test_publish_handle_store_and_emit(setpiece_stack: StackStarter) -> None:
    stack, seen = loyalty_stack()
    rt = await setpiece_stack(stack)
    first = await rt.publish(registered("cu-1", "s1"))
    await rt.publish_many([registered("cu-1", f"s{i}") for i in range(2, 6)])
    awarded = await rt.expect({"type": ["points_awarded"], "data": {"points": [500]}})
    assert awarded.causationid == awarded.correlationid != first.id  # caused by the fifth
    await rt.drain(timeout=10)
    assert await rt.store("loyalty").get("cu-1") == 500
    notes = dict(await rt.store("audit").items())
    assert len(notes) == 5
    causes = {n["cause"] for n in notes.values()}
    assert first.id in causes
    assert all(n["corr"] == n["cause"] for n in notes.values())
    assert seen == ["s1", "s2", "s3", "s4", "s5"]  # one key, in order


@on_setpiece_engines
async def test_order_is_kept_per_key_under_concurrency(setpiece_stack: StackStarter) -> None:
    order: dict[str, list[int]] = {}
    svc = Service("orders")

    @svc.on({"type": ["step"]})
    async def step(event: Event, ctx: Context) -> None:
        await asyncio.sleep(0.0005 * (event.data["n"] % 3))  # uneven work
        order.setdefault(event.partitionkey or "", []).append(event.data["n"])

    rt = await setpiece_stack(Stack("s", services=[svc]), config=RuntimeConfig(concurrency=8))
    await rt.publish_many(
        [Event(type="step", source="t", data={"n": i}, partitionkey=f"k{i % 7}")
         for i in range(300)]
    )
    await rt.drain(timeout=20)
    assert sum(len(v) for v in order.values()) == 300
    for numbers in order.values():
        assert numbers == sorted(numbers)


@on_engines
def test_failing_handler_is_retried_then_dead_lettered_with_reason(
    run: Run, engine_urls: Urls
) -> None:
    url, store = engine_urls
    attempts: list[int] = []
    svc = Service("flaky")

    @svc.on({"type": ["t"]}, retry=FAST)
    async def fails(event: Event, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        await ctx.store.put("touched", True)  # must not survive the failed attempts
        raise RuntimeError("database is down")

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            event = await rt.publish(Event(type="t", source="x", data={"v": 1}))
            await rt.drain(timeout=10)
            letters = await rt.dead_letters()
            assert len(letters) == 1
            letter = letters[0]
            assert letter.event == event
            assert letter.error == "RuntimeError: database is down"
            assert "database is down" in letter.traceback and "fails" in letter.traceback
            assert letter.handler == "flaky.fails" and letter.attempts == 3
            assert letter.time.endswith("Z")
            assert await rt.store("flaky").get("touched") is None

    run(main())
    assert attempts == [1, 2, 3]


@on_engines
def test_transient_failure_recovers_and_effects_happen_once(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    svc = Service("svc")
    calls: list[int] = []

    @svc.on({"type": ["t"]}, retry=FAST)
    async def once_broken(event: Event, ctx: Context) -> Event:
        calls.append(ctx.attempt)
        n = await ctx.store.get("n", 0)
        await ctx.store.put("n", n + 1)
        if ctx.attempt == 1:
            raise Retry("not yet", delay=0.001)
        return Event(type="done", data={})

    stack = Stack("s", services=[svc], streams=[])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            await rt.publish(Event(type="t", source="x"))
            await rt.drain(timeout=10)
            assert await rt.store("svc").get("n") == 1
            assert await rt.dead_letters() == []

    run(main())
    assert calls == [1, 2]


def test_wrong_return_type_is_dead_lettered_with_the_reason(run: Run) -> None:
    svc = Service("svc")

    @svc.on({"type": ["t"]}, retry=FAST)
    async def bad(event: Event, ctx: Context) -> Any:
        return {"not": "an event"}

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish(Event(type="t", source="x"))
            await rt.drain(timeout=10)
            [letter] = await rt.dead_letters()
            assert "returned dict" in letter.error and "HandlerError" in letter.error
            assert letter.attempts == 3

    run(main())


def test_emitting_a_malformed_event_is_a_failed_delivery(run: Run) -> None:
    svc = Service("svc")

    @svc.on({"type": ["t"]}, retry=FAST)
    async def bad(event: Event, ctx: Context) -> Event:
        return Event(type="out", data={"x": object()})

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish(Event(type="t", source="x"))
            await rt.drain(timeout=10)
            [letter] = await rt.dead_letters()
            assert "EventError" in letter.error and "JSON" in letter.error

    run(main())


class Order(msgspec.Struct):
    order: str
    amount: int


class Customer(pydantic.BaseModel):
    name: str
    age: int


def test_typed_inputs_and_undecodable_data_goes_straight_to_dead_letters(run: Run) -> None:
    got: list[Any] = []
    svc = Service("typed")

    @svc.on({"type": ["order"]}, retry=FAST)
    async def orders(order: Order, ctx: Context) -> None:
        got.append(order)

    @svc.on({"type": ["customer"]}, retry=FAST)
    def customers(customer: Customer) -> None:  # plain def, no ctx
        got.append(customer)

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish_many([
                Event(type="order", source="x", data={"order": "o1", "amount": 3}),
                Event(type="order", source="x", data={"order": "o2", "amount": "many"}),
                Event(type="customer", source="x", data={"name": "Ann", "age": 41}),
                Event(type="customer", source="x", data={"name": "Bob"}),
            ])
            await rt.drain(timeout=10)
            letters = sorted(await rt.dead_letters(), key=lambda d: d.handler)
            assert [d.handler for d in letters] == ["typed.customers", "typed.orders"]
            assert all(d.attempts == 1 for d in letters)  # no point retrying bad data
            assert "does not fit Customer" in letters[0].error and "age" in letters[0].error
            assert "does not fit Order" in letters[1].error and "amount" in letters[1].error

    run(main())
    assert Order("o1", 3) in got and Customer(name="Ann", age=41) in got


@on_engines
def test_sync_handlers_use_a_blocking_context(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    svc = Service("sync")

    @svc.on({"type": ["t"]})
    def count(event: Event, ctx: Any) -> Event:
        ctx.store.put("n", ctx.store.get("n", 0) + 1)
        ctx.publish(Event(type="side", data={}))
        return Event(type="counted", data={})

    seen: list[str] = []
    other = Service("other")

    @other.on({"type": ["side", "counted"]})
    async def watch(event: Event) -> None:
        seen.append(event.type)

    stack = Stack("s", services=[svc, other])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            await rt.publish_many([Event(type="t", source="x") for _ in range(3)])
            await rt.drain(timeout=10)
            assert await rt.store("sync").get("n") == 3

    run(main())
    assert sorted(seen) == ["counted"] * 3 + ["side"] * 3


def test_drop_acknowledges_without_effects(run: Run) -> None:
    svc = Service("svc")

    @svc.on({"type": ["t"]})
    async def maybe(event: Event, ctx: Context) -> None:
        await ctx.store.put(event.id, True)
        if event.data["drop"]:
            raise Drop("not for us")

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            kept = await rt.publish(Event(type="t", source="x", data={"drop": False}))
            dropped = await rt.publish(Event(type="t", source="x", data={"drop": True}))
            await rt.drain(timeout=10)
            assert await rt.store("svc").get(kept.id) is True
            assert await rt.store("svc").get(dropped.id) is None
            assert await rt.dead_letters() == []

    run(main())


@on_engines
def test_inbox_deduplicates_the_same_event_id(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    stack, seen = loyalty_stack()

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            event = registered("cu-9", "dup")
            await rt.publish(event)
            await rt.publish(event)  # a producer retry
            await rt.publish_many([event, event])
            await rt.drain(timeout=10)
            assert await rt.store("loyalty").get("cu-9") == 100

    run(main())
    assert seen == ["dup"]


@on_engines
def test_stream_consumers_rule_targets_and_transforms(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    from setpiece.patterns import InputTransformer

    orders = Stream("orders", partitions=2)
    audit_bus = Bus("audit")
    main_bus = Bus("default")
    main_bus.rule("to-orders", {"type": ["order_placed"]}, orders)
    main_bus.rule("to-audit", {"source": ["shop"]}, audit_bus,
                  transform=InputTransformer({"t": "$.type"}, '{"what": <t>}'))
    records: list[Any] = []
    audited: list[Any] = []
    svc = Service("fulfil")

    @svc.consume(orders)
    async def ship(event: Event, ctx: Context) -> None:
        records.append(event.data["n"])

    @svc.on({"source": ["shop"]}, bus="audit")
    async def audit(event: Event) -> None:
        audited.append(event.data)

    stack = Stack("s", services=[svc], buses=[main_bus, audit_bus], streams=[orders])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            await rt.publish_many([Event(type="order_placed", source="shop", data={"n": i},
                                         partitionkey="one") for i in range(5)])
            await rt.publish(Event(type="ignored", source="elsewhere"))
            await rt.drain(timeout=10)

    run(main())
    assert records == [0, 1, 2, 3, 4]
    assert audited == [{"what": "order_placed"}] * 5


@on_engines
def test_redrive_sends_a_dead_letter_back_to_its_handler_only(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    broken = {"on": True}
    calls: dict[str, int] = {"a": 0, "b": 0}
    svc = Service("svc")

    @svc.on({"type": ["t"]}, retry=RetryPolicy(max_attempts=1))
    async def a(event: Event) -> None:
        calls["a"] += 1
        if broken["on"]:
            raise RuntimeError("broken")

    @svc.on({"type": ["t"]})
    async def b(event: Event) -> None:
        calls["b"] += 1

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            await rt.publish(Event(type="t", source="x"))
            await rt.drain(timeout=10)
            [letter] = await rt.dead_letters()
            broken["on"] = False
            assert await rt.redrive([letter.id]) == 1
            await rt.drain(timeout=10)
            assert await rt.dead_letters() == []
            assert len(await rt.dead_letters(include_redriven=True)) == 1
            assert await rt.redrive() == 0

    run(main())
    assert calls == {"a": 2, "b": 1}


@on_engines
def test_replay_through_one_rule(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    import time as _time

    counts = {"a": 0, "b": 0}
    svc = Service("svc")

    @svc.on({"type": ["t"]})
    async def a(event: Event) -> None:
        counts["a"] += 1

    @svc.on({"type": ["t"]})
    async def b(event: Event) -> None:
        counts["b"] += 1

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            began = _time.time() - 1
            await rt.publish_many([Event(type="t", source="x") for _ in range(4)])
            await rt.drain(timeout=10)
            assert await rt.replay(start=began, rule="svc.a", name="r1") == 4
            await rt.drain(timeout=10)
            assert await rt.replay(start=began, name="r2") == 4  # replays are not replayed
            await rt.drain(timeout=10)

    run(main())
    assert counts == {"a": 12, "b": 8}


@on_engines
def test_schedules_fire_on_durable_timers(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls
    svc = Service("clock")

    @svc.every(0.05)
    async def tick(ctx: Context) -> Event:
        await ctx.store.put("ticks", await ctx.store.get("ticks", 0) + 1)
        return Event(type="ticked", data={})

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            for _ in range(200):
                await asyncio.sleep(0.02)
                if (await rt.store("clock").get("ticks", 0)) >= 3:
                    break
            assert await rt.store("clock").get("ticks", 0) >= 3

    run(main())


def test_cron_expressions_are_checked() -> None:
    svc = Service("clock")
    with pytest.raises(ConfigError, match="invalid cron expression"):
        svc.cron("every tuesday")
    svc.cron("*/5 * * * *", name="often")(lambda: None)
    with pytest.raises(ConfigError, match="pass name="):
        svc.every(5)(lambda: None)


def test_declaration_errors_name_what_is_wrong() -> None:
    svc = Service("svc")

    @svc.on({"type": ["t"]}, bus="nope")
    async def a(event: Event) -> None: ...

    with pytest.raises(ConfigError, match=r"svc\.a: listens on bus 'nope'"):
        Stack("s", services=[svc])
    other = Service("other")

    @other.consume("missing")
    async def b(event: Event) -> None: ...

    with pytest.raises(ConfigError, match="consumes stream 'missing'"):
        Stack("s", services=[other])
    bus = Bus("default")
    bus.rule("r", {"type": ["x"]}, Stream("undeclared"))
    with pytest.raises(ConfigError, match="target stream 'undeclared'"):
        Stack("s", buses=[bus])
    with pytest.raises(ConfigError, match="two of service"):
        Stack("s", services=[Service("x"), Service("x")])
    with pytest.raises(ConfigError, match="declared twice"):
        svc.on({"type": ["t"]})(a)
    with pytest.raises(ConfigError, match="handler takes"):
        svc.on({"type": ["t"]}, name="three")(lambda a, b, c: None)
    with pytest.raises(ConfigError, match="service name"):
        Service("bad name!")


def test_invalid_patterns_are_refused_with_the_handler_named() -> None:
    from setpiece import PatternError

    svc = Service("svc")
    with pytest.raises(PatternError, match=r"handler svc\.h"):
        svc.on({"type": "not-a-list"}, name="h")(lambda e: None)  # type: ignore[arg-type]
    with pytest.raises(PatternError, match="rule 'r'"):
        Bus("b").rule("r", {"type": "x"}, Stream("s"))  # type: ignore[arg-type]


def test_publish_refuses_bad_events_and_unknown_targets(run: Run) -> None:
    stack = Stack("s", streams=[Stream("known")])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            with pytest.raises(EventError, match="source"):
                await rt.publish(Event(type="t"))
            with pytest.raises(EventError, match="over the limit"):
                await rt.publish(Event(type="t", source="x", data="x" * 300_000))
            with pytest.raises(EventError, match=r"event #1: time"):
                await rt.publish_many([Event(type="t", source="x"),
                                       Event(type="t", source="x", time="noon")])
            with pytest.raises(ConfigError, match="no stream 'unknown'"):
                await rt.publish(Event(type="t", source="x"), stream="unknown")
            with pytest.raises(ConfigError, match="no bus 'unknown'"):
                await rt.publish(Event(type="t", source="x"), bus="unknown")
            with pytest.raises(ConfigError, match="no service"):
                rt.store("ghost")
            await rt.publish(Event(type="t", source="x"), stream="known")
            assert (await rt.engine.end_offsets("known")) != [0, 0, 0, 0]
            assert sum(await rt.engine.end_offsets("bus.default")) == 0  # nothing half-stored

    run(main())


def test_a_file_that_is_not_a_setpiece_database_is_refused(run: Run, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)

    async def main() -> None:
        with pytest.raises(EngineError, match="not a setpiece database"):
            async with Stack("s").start(engine=f"sqlite:///{junk}"):
                pass

    run(main())


def test_restart_resumes_from_committed_offsets(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    stack, seen = loyalty_stack()

    async def first() -> None:
        async with stack.start(engine=url) as rt:
            await rt.publish_many([registered("cu-1", f"s{i}") for i in range(3)])
            await rt.drain(timeout=10)

    async def second() -> None:
        async with stack.start(engine=url) as rt:
            assert await rt.store("loyalty").get("cu-1") == 300
            await rt.publish(registered("cu-1", "s3"))
            await rt.drain(timeout=10)
            assert await rt.store("loyalty").get("cu-1") == 400

    run(first())
    run(second())
    assert seen == ["s0", "s1", "s2", "s3"]


@on_engines
def test_store_conflicts_between_concurrent_deliveries_lose_no_update(
    run: Run, engine_urls: Urls
) -> None:
    url, store = engine_urls
    svc = Service("counter")

    @svc.on({"type": ["inc"]})
    async def inc(event: Event, ctx: Context) -> None:
        n = await ctx.store.get("total", 0)
        await asyncio.sleep(0)  # let other deliveries interleave
        await ctx.store.put("total", n + 1)

    @svc.on({"type": ["inc"]}, name="inc_again")
    async def inc2(event: Event, ctx: Context) -> None:
        n = await ctx.store.get("total", 0)
        await asyncio.sleep(0)
        await ctx.store.put("total", n + 1)

    stack = Stack("s", services=[svc])

    async def main() -> None:
        config = RuntimeConfig(concurrency=16)
        async with stack.start(url, store=store, config=config) as rt:
            await rt.publish_many([Event(type="inc", source="x") for _ in range(200)])
            await rt.drain(timeout=30)
            assert await rt.store("counter").get("total") == 400

    run(main())


def test_stopping_mid_batch_hands_work_back_and_loses_nothing(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/stop.db"
    done: list[int] = []

    def build() -> Stack:
        svc = Service("slow")

        @svc.on({"type": ["job"]}, concurrency=1)
        async def work(event: Event, ctx: Context) -> None:
            await asyncio.sleep(0.01)
            await ctx.store.put(str(event.data["n"]), True)
            done.append(event.data["n"])

        return Stack("s", services=[svc])

    async def first() -> None:
        config = RuntimeConfig(batch_size=50, shutdown_grace=0.05)
        async with build().start(engine=url, config=config) as rt:
            await rt.publish_many(
                [Event(type="job", source="t", data={"n": i}) for i in range(200)]
            )
            await asyncio.sleep(0.2)  # leave while a batch is in flight

    async def second() -> None:
        async with build().start(engine=url) as rt:
            await rt.drain(timeout=30)
            stored = dict(await rt.store("slow").items())
            assert sorted(int(k) for k in stored) == list(range(200))

    run(first())
    assert 0 < len(set(done)) < 200
    run(second())


def test_unreadable_records_on_a_bus_are_dead_lettered_as_they_are(run: Run) -> None:
    svc = Service("svc")
    handled: list[str] = []

    @svc.on({"type": ["t"]})
    async def h(event: Event) -> None:
        handled.append(event.id)

    stack = Stack("s", services=[svc])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.engine.append("bus.default", [(None, b"not json"), (None, b'{"type": "t"}')])
            good = await rt.publish(Event(type="t", source="x"))
            await rt.drain(timeout=10)
            letters = await rt.dead_letters()
            assert sorted(d.raw or "" for d in letters) == ["not json", '{"type": "t"}']
            assert "id: required" in letters[0].error or "id: required" in letters[1].error
            assert all(d.event is None and d.handler == "svc.h" for d in letters)
            assert handled == [good.id]

    run(main())
