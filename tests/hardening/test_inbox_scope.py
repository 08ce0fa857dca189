"""Issue 11, item 2: the inbox deduplicates on what CloudEvents says is unique, ``source`` +
``id``, scoped by tenant; an existing database (made with the old key, the id alone) keeps
working."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from setpiece import Context, Event, Service, Stack
from setpiece.engine import OffsetCommit, UnitOfWork, open_engine
from setpiece.runtime.consumer import inbox_key
from tests.conftest import ENGINES, fresh_urls

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]
on_engines = pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)


def counting_stack() -> Stack:
    svc = Service("svc")

    @svc.on({"type": ["t"]})
    async def count(event: Event, ctx: Context) -> None:
        await ctx.store.put(f"{event.source}/{event.id}", event.data)

    return Stack("inbox", services=[svc])


@on_engines
def test_the_same_id_from_another_source_or_tenant_is_not_dropped(
    run: Run, engine_urls: Urls
) -> None:
    url, store = engine_urls
    stack = counting_stack()

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            first = Event(type="t", source="a", id="evt_1001", data=1, tenant="t1")
            await rt.publish(first)
            await rt.drain(timeout=20)
            await rt.publish_many([
                first,  # a producer's retry: dropped
                first.replace(data=99),  # the same source, id and tenant: the same event
                Event(type="t", source="a", id="evt_1001", data=2, tenant="t2"),
                Event(type="t", source="b", id="evt_1001", data=3, tenant="t1"),
                Event(type="t", source="a", id="evt_1001", data=4),  # no tenant
            ])
            await rt.drain(timeout=20)
            assert await rt.store("svc", tenant="t1").get("a/evt_1001") == 1
            assert await rt.store("svc", tenant="t2").get("a/evt_1001") == 2
            assert await rt.store("svc", tenant="t1").get("b/evt_1001") == 3
            assert await rt.store("svc").get("a/evt_1001") == 4

    run(main())


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # Separators inside the parts cannot make two different events share a key.
        (("a\x1fb", "c", None), ("a", "b\x1fc", None)),
        (("a", "b\x1fc", None), ("a", "b", "c")),
        (("a", "b", ""), ("a", "b", None)),
        (("a", "b", "c\x1ed"), ("a", "b", "c")),
        (("a" * 300, "b", None), ("a" * 300, "c", None)),
        (("\u00e9", "b", None), ("\u00e9", "b", "t")),
    ],
)
def test_inbox_keys_of_different_events_differ(
    one: tuple[str, str, str | None], other: tuple[str, str, str | None]
) -> None:
    def key(parts: tuple[str, str, str | None], replay: str | None = None) -> str:
        return inbox_key(Event(type="t", id=parts[0], source=parts[1], tenant=parts[2]), replay)

    assert key(one) != key(other)
    assert key(one) == key(one)
    assert key(one, "r1") != key(one) and key(one, "r1") != key(one, "r2")
    for k in (key(one), key(other), key(one, "r\x00")):
        assert "\x00" not in k and len(k.encode()) <= 512  # storable and indexable anywhere


@pytest.mark.parametrize(
    "kind", ["sqlite-file", pytest.param("nats-pg", marks=pytest.mark.servers)]
)
def test_a_database_made_with_the_old_inbox_key_keeps_working(
    run: Run, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """A database (SQLite file, PostgreSQL schema) whose inbox holds keys of the old format (the
    event id alone) and whose offsets were committed by the old runtime: it opens, the consumer
    goes on from its offsets (nothing read twice), and new events are deduplicated with the new
    key."""
    store: str | None = None
    if kind == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        servers = request.getfixturevalue("nats"), request.getfixturevalue("postgres")
        url, store = fresh_urls(*servers)
    stack = counting_stack()
    old = Event(type="t", source="a", id="evt_1", data="old")

    async def made_by_the_old_version() -> None:
        async with stack.start(url, store=store) as rt:
            await rt.stop()  # the streams and groups exist; nothing consumes
            # What the old runtime committed after handling ``old``: its store write, the old
            # inbox key (the id alone) and the offset past it.
            await rt.engine.append("bus.default", [(None, old.to_json())])
            ends = await rt.engine.end_offsets("bus.default")
            part = next(p for p, end in enumerate(ends) if end)
            await rt.engine.commit(UnitOfWork(
                inbox=[("svc.count", old.id)],
                offsets=[OffsetCommit("svc.count", "bus.default", part, 0, 1)],
            ))

    async def upgraded() -> None:
        async with stack.start(url, store=store) as rt:
            fresh = Event(type="t", source="b", id="evt_1", data="new")
            await rt.publish_many([fresh, fresh])
            await rt.drain(timeout=20)
            assert await rt.store("svc").get("a/evt_1") is None  # not handled again
            assert await rt.store("svc").get("b/evt_1") == "new"  # once, despite the old row
            assert await rt.dead_letters() == []

    async def inbox_rows() -> set[str]:
        engine = await open_engine(url, store=store)
        try:
            return await engine.inbox_seen("svc.count", [old.id, inbox_key(old, None)])
        finally:
            await engine.close()

    run(made_by_the_old_version())
    run(upgraded())
    assert run(inbox_rows()) == {old.id}  # the old row is left to age out (inbox_retention)
