"""Tables: the latest value per key, tombstones, TTL, reads from handlers and from outside,
rebuilds from the log, and bad input."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from setpiece import Bus, ConfigError, Context, Event, Service, Stack, Stream
from setpiece.views import Table
from tests.conftest import ENGINES
from tests.views.helpers import read_all

profiles = Stream("profiles", partitions=4)
orders = Stream("orders", partitions=4)


def profile(key: str, data: Any, **extra: Any) -> Event:
    return Event(type="profile", source="test", partitionkey=key, data=data, **extra)


@pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)
def test_latest_value_per_key_tombstones_items_and_range(
    run: Any, engine_urls: tuple[str, str | None]
) -> None:
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    stack = Stack("t", streams=[profiles], views=[table])

    async def main() -> None:
        url, store = engine_urls
        async with stack.start(engine=url, store=store) as rt:
            await rt.publish_many([profile("cu-1", {"n": 1}), profile("cu-2", {"n": 2}),
                                   profile("cu-1", {"n": 3}), profile("cx-9", {"n": 9}),
                                   profile("cu-2", None)], stream="profiles")
            await rt.drain()
            view = rt.view("profile_table")
            assert await view.get("cu-1") == {"n": 3}
            assert await view.get("cu-2") is None  # the tombstone deleted it
            assert await view.get("nobody", "absent") == "absent"
            assert await view.items(prefix="cu-") == [("cu-1", {"n": 3})]
            assert await view.items() == [("cu-1", {"n": 3}), ("cx-9", {"n": 9})]
            assert await view.range("cu-", "cv") == [("cu-1", {"n": 3})]
            assert await view.range("cu-2") == [("cx-9", {"n": 9})]
            assert await rt.dead_letters() == []

    run(main())


def test_value_function_and_a_bus_pattern_source(run: Any) -> None:
    bus = Bus("events")
    table = Table("names", bus, pattern={"type": ["renamed"]},
                  key=lambda e: e.data["id"], value=lambda e: e.data["name"])
    stack = Stack("t", buses=[bus], views=[table])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish_many([
                Event(type="renamed", source="t", data={"id": "a", "name": "Ann"}),
                Event(type="other", source="t", data={"id": "a", "name": "ignored"}),
                Event(type="renamed", source="t", data={"id": "b", "name": "Bo"}),
            ], bus="events")
            await rt.drain()
            assert await rt.view("names").items() == [("a", "Ann"), ("b", "Bo")]

    run(main())


def test_handlers_read_tables_with_ctx_view(run: Any) -> None:
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    svc = Service("docs")
    seen: list[Any] = []

    @svc.consume(orders)
    async def enrich(event: Event, ctx: Context) -> None:
        seen.append(await ctx.view("profile_table").get(event.partitionkey))

    stack = Stack("t", services=[svc], streams=[profiles, orders], views=[table])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish(profile("cu-1", {"name": "Ann"}), stream="profiles")
            await rt.drain()
            await rt.publish(Event(type="o", source="t", partitionkey="cu-1"), stream="orders")
            await rt.publish(Event(type="o", source="t", partitionkey="cu-2"), stream="orders")
            await rt.drain()
            assert sorted(seen, key=repr) == sorted([{"name": "Ann"}, None], key=repr)

    run(main())


def test_unknown_view_names_are_clear_errors(run: Any) -> None:
    table = Table("profile_table", profiles, key=lambda e: e.partitionkey)
    svc = Service("docs")

    @svc.consume(orders)
    async def enrich(event: Event, ctx: Context) -> None:
        await ctx.view("nope").get("x")

    stack = Stack("t", services=[svc], streams=[profiles, orders], views=[table])
    bare = Stack("bare", streams=[profiles])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            with pytest.raises(ConfigError, match=r"no view 'nope' \(views: \['profile_table'\]\)"):
                rt.view("nope")
            await rt.publish(Event(type="o", source="t", partitionkey="k"), stream="orders")
            await rt.drain()
            [letter] = await rt.dead_letters()
            assert "no view 'nope'" in letter.error
        async with bare.start(engine="memory") as rt:
            with pytest.raises(ConfigError, match="no view 'x'"):
                rt.view("x")

    run(main())


def test_a_key_function_that_raises_or_returns_no_string_dead_letters_the_event(
    run: Any,
) -> None:
    table = Table("t1", profiles, key=lambda e: e.data["id"])
    stack = Stack("t", streams=[profiles], views=[table])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            await rt.publish_many([profile("a", {"id": "ok"}), profile("b", {"x": 1}),
                                   profile("c", {"id": 7}), profile("d", {"id": "bad\0"})],
                                  stream="profiles")
            await rt.drain()
            assert await rt.view("t1").items() == [("ok", {"id": "ok"})]
            errors = sorted(d.error for d in await rt.dead_letters())
            assert len(errors) == 3
            assert any("key function raised KeyError" in e for e in errors)
            assert any("key function returned int, not a string" in e for e in errors)
            assert any("U+0000" in e for e in errors)

    run(main())


def test_rows_expire_after_their_ttl_of_event_time(run: Any, tmp_path: Path) -> None:
    table = Table("sessions", profiles, key=lambda e: e.partitionkey, ttl=1)
    stack = Stack("t", streams=[profiles], views=[table])
    now = time.time()

    def stamped(key: str, age: float) -> Event:
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - age))
        return profile(key, {"age": age}, time=moment)

    async def main() -> None:
        url = f"sqlite:///{tmp_path / 'ttl.db'}"
        async with stack.start(engine=url) as rt:
            await rt.publish_many([stamped("old", 3600), stamped("fresh", -3600)],
                                  stream="profiles")
            await rt.drain()
            view = rt.view("sessions")
            assert await view.get("old") is None
            assert await view.get("fresh") == {"age": -3600}
            assert [k for k, _ in await view.items()] == ["fresh"]
            ns = view.layout.state
            for _ in range(400):  # the sweep (each ttl) removes the expired row from the store
                if [k for k, _ in await rt.engine.kv_scan(ns)] == ["fresh"]:
                    break
                await asyncio.sleep(0.05)
            assert [k for k, _ in await rt.engine.kv_scan(ns)] == ["fresh"]

    run(main())


def test_a_changed_definition_rebuilds_the_table_from_the_log(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rebuild.db'}"

    def stack(value: Any) -> Stack:
        return Stack("t", streams=[profiles],
                     views=[Table("names", profiles, key=lambda e: e.partitionkey, value=value)])

    async def main() -> None:
        first = stack(lambda e: e.data["name"])
        async with first.start(engine=url) as rt:
            await rt.publish_many([profile("a", {"name": "Ann", "age": 3}),
                                   profile("b", {"name": "Bo", "age": 4})], stream="profiles")
            await rt.drain()
            assert await rt.view("names").items() == [("a", "Ann"), ("b", "Bo")]
            old_ns = rt.view("names").layout.state
        second = stack(lambda e: e.data["age"])  # a different function: rebuilt from the log
        async with second.start(engine=url) as rt:
            await rt.drain()
            assert await rt.view("names").items() == [("a", 3), ("b", 4)]
            assert await rt.engine.kv_scan(old_ns) == []  # the old generation is removed
        async with second.start(engine=url) as rt:  # the same definition: not rebuilt
            await rt.publish(profile("a", {"name": "Ann", "age": 5}), stream="profiles")
            await rt.drain()
            assert await rt.view("names").items() == [("a", 5), ("b", 4)]

    run(main())


def test_missing_state_is_rebuilt_from_the_log(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    stack = Stack("t", streams=[profiles],
                  views=[Table("names", profiles, key=lambda e: e.partitionkey)])

    async def main() -> None:
        async with stack.start(engine=url) as rt:
            await rt.publish_many([profile("a", 1), profile("b", 2)], stream="profiles")
            await rt.drain()
            layout = rt.view("names").layout
            # The state is lost (a restored store, a wiped namespace) but the offsets are not.
            from setpiece.engine import KVWrite, UnitOfWork

            lost = [KVWrite(layout.state, k, None) for k, _ in await rt.engine.kv_scan(
                layout.state)]
            lost.append(KVWrite(layout.meta, "definition", None))
            await rt.engine.commit(UnitOfWork(writes=lost))
        async with stack.start(engine=url) as rt:
            await rt.drain()
            assert await rt.view("names").items() == [("a", 1), ("b", 2)]

    run(main())


def test_tables_commit_their_offsets_and_state_together(run: Any) -> None:
    """The table's state and offset move in one unit: a view's group never gets ahead of its
    rows (checked on the store after every commit)."""
    table = Table("names", profiles, key=lambda e: e.partitionkey)
    stack = Stack("t", streams=[profiles], views=[table])

    async def main() -> None:
        async with stack.start(engine="memory") as rt:
            engine = rt.engine
            seen: list[Any] = []
            real_commit = engine.commit

            async def commit(work: Any) -> Any:
                if any(o.group.startswith("view.names") for o in work.offsets):
                    seen.append((len(work.writes), [o.to_offset - o.from_offset
                                                    for o in work.offsets]))
                return await real_commit(work)

            engine.commit = commit  # type: ignore[method-assign]
            await rt.publish_many([profile(f"k{i}", i) for i in range(40)], stream="profiles")
            await rt.drain()
            assert sum(n for n, _ in seen) == 40
            assert all(n == moved[0] for n, moved in seen)  # each record's row with its offset
            assert len(await rt.view("names").items()) == 40
            assert await read_all(engine, "setpiece.deadletters") == []

    run(main())


def test_declarations_are_checked() -> None:
    other = Stream("other", partitions=4)
    with pytest.raises(ConfigError, match="source stream 'other' is not declared"):
        Stack("t", streams=[profiles], views=[Table("x", other, key=lambda e: "k")])
    with pytest.raises(ConfigError, match="a bus source needs pattern="):
        Table("x", Bus("b"), key=lambda e: "k")
    with pytest.raises(ConfigError, match="key= must be callable"):
        Table("x", profiles, key="partitionkey")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="two of view 'x'"):
        Stack("t", streams=[profiles], views=[Table("x", profiles, key=lambda e: "k")] * 2)
    with pytest.raises(ConfigError, match="ttl: must be > 0"):
        Table("x", profiles, key=lambda e: "k", ttl=0)
