"""Issue 11, item 1 (runtime side): whatever a stored record holds, the consumer dead-letters it
with the reason and goes on; a consumer task that ends anyway is logged at once, restarted, and
reported down by the health check while it is down.

The records are written straight to the engine (``engine.append``), past every edge check, as a
record appended by another program (or by an older version) would be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from setpiece import Context, Event, RetryPolicy, Service, Stack
from setpiece.errors import RefusedError
from tests.conftest import ENGINES

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]
on_engines = pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)
FAST = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.01)


def nested(depth: int, leaf: Any = 1, *, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def deep_json(obj: dict[str, Any]) -> bytes:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return json.dumps(obj).encode()
    finally:
        sys.setrecursionlimit(limit)


def poison_stack() -> tuple[Stack, list[str]]:
    """Two handlers on the default bus: one tests a field of data, one writes the store."""
    handled: list[str] = []
    svc = Service("svc")

    @svc.on({"type": ["t"], "data": {"a": [{"exists": True}]}}, retry=FAST)
    async def tests_a(event: Event) -> None:
        if "b" in event.data:
            raise ValueError("data.b: not expected")  # dead-lettered with the event
        handled.append(event.id)

    @svc.on({"type": ["t"]}, retry=FAST)
    async def writes(event: Event, ctx: Context) -> None:
        await ctx.store.put(f"seen/{event.id}", True)

    return Stack("poison", services=[svc]), handled


POISON: dict[str, Callable[[], bytes]] = {
    # More than the matcher's 512 levels, on the field a rule tests.
    "deep-list-on-a-tested-field": lambda: deep_json(
        {"type": "t", "source": "x", "id": "p1", "data": {"a": nested(600)}}
    ),
    # Deeper than the encoder can write back (a dead letter must still be written).
    "very-deep-object": lambda: deep_json(
        {"type": "t", "source": "x", "id": "p2", "data": {"a": 1, "b": nested(3000, kind="dict")}}
    ),
    "extensions-a-list": lambda: msgspec.json.encode(
        {"type": "t", "source": "x", "id": "p3", "data": {"a": 1}, "extensions": ["x"]}
    ),
    "extensions-a-string": lambda: msgspec.json.encode(
        {"type": "t", "source": "x", "id": "p4", "data": {"a": 1}, "extensions": "sptarget"}
    ),
    "extension-mark-not-a-string": lambda: msgspec.json.encode(
        {"type": "t", "source": "x", "id": "p5", "data": {"a": 1},
         "extensions": {"sptarget": 5, "spreplay": [1]}}
    ),
    "tenant-a-number": lambda: msgspec.json.encode(
        {"type": "t", "source": "x", "id": "p6", "data": {"a": 1}, "tenant": 5}
    ),
    "subject-an-object": lambda: msgspec.json.encode(
        {"type": "t", "source": "x", "id": "p7", "data": {"a": 1}, "subject": {"x": 1}}
    ),
    "u0000-in-id-tenant-and-source": lambda: msgspec.json.encode(
        {"type": "t", "source": "x\u0000y", "id": "p\u00008", "data": {"a": 1},
         "tenant": "t\u0000", "partitionkey": "k\u0000"}
    ),
    "id-a-list": lambda: msgspec.json.encode(
        {"type": "t", "source": "x", "id": ["p9"], "data": {"a": 1}}
    ),
}


@on_engines
@pytest.mark.parametrize("poison", list(POISON))
def test_a_poison_record_is_dead_lettered_and_the_consumers_go_on(
    run: Run, engine_urls: Urls, poison: str
) -> None:
    url, store = engine_urls
    stack, handled = poison_stack()

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            await rt.engine.append("bus.default", [("k", POISON[poison]())])
            good = await rt.publish(Event(type="t", source="x", data={"a": 1}, partitionkey="k"))
            await rt.drain(timeout=20)
            assert good.id in handled  # the consumers are alive, and went past the record
            assert await rt.store("svc").get(f"seen/{good.id}") is True
            assert rt.health()["status"] == "ok"
            assert all(not task.done() for task in rt._tasks)
            letters = await rt.dead_letters()
            # Each consumer either handled the record or dead-lettered it with the reason.
            for letter in letters:
                assert letter.error and letter.group in ("svc.tests_a", "svc.writes")
                assert letter.event is not None or letter.raw
            expected = {
                "very-deep-object": {"svc.tests_a"},  # the handler fails: the event is too deep
                "u0000-in-id-tenant-and-source": set(),  # refused on PostgreSQL alone
            }.get(poison, {"svc.tests_a", "svc.writes"})
            assert {d.group for d in letters} >= expected

    run(main())


def test_a_dead_letter_commits_with_the_offset_so_a_restart_goes_on(
    run: Run, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    stack, handled = poison_stack()

    async def first() -> None:
        async with stack.start(url) as rt:
            await rt.engine.append("bus.default", [(None, POISON["extensions-a-list"]())])
            await rt.drain(timeout=10)
            assert len(await rt.dead_letters()) == 2

    async def second() -> None:
        async with stack.start(url) as rt:
            good = await rt.publish(Event(type="t", source="x", data={"a": 1}))
            await rt.drain(timeout=10)
            assert good.id in handled
            assert len(await rt.dead_letters()) == 2  # not read (nor dead-lettered) again
            assert rt.health()["status"] == "ok"

    run(first())
    run(second())


def test_a_unit_the_engine_refuses_dead_letters_that_record_alone(run: Run) -> None:
    """The store path: the engine refuses a commit (PostgreSQL does for U+0000 in text). The
    batch is taken again one record at a time; the refused record is dead-lettered with the
    reason, every other record's effects commit once."""
    svc = Service("svc")

    @svc.on({"type": ["t"]})
    async def writes(event: Event, ctx: Context) -> None:
        await ctx.store.put(event.data["key"], event.data["n"])

    stack = Stack("refused", services=[svc])

    async def main() -> None:
        async with stack.start("memory") as rt:
            engine = rt.engine
            real_commit = engine.commit

            async def commit(work: Any) -> Any:  # a value this engine cannot store
                if any(w.key == "unstorable" for w in work.writes):
                    raise RefusedError("test engine refused the unit: key 'unstorable'")
                return await real_commit(work)

            engine.commit = commit  # type: ignore[method-assign]
            events = [
                Event(type="t", source="x", data={"key": "unstorable" if n == 3 else f"k{n}",
                                                  "n": n})
                for n in range(6)
            ]
            await rt.publish_many(events)
            await rt.drain(timeout=10)
            items = dict(await rt.store("svc").items())
            assert items == {f"k{n}": n for n in range(6) if n != 3}
            letters = await rt.dead_letters()
            assert [d.event.id for d in letters if d.event] == [events[3].id]
            assert "RefusedError" in letters[0].error and "unstorable" in letters[0].error
            assert rt.health()["status"] == "ok"

    run(main())


@pytest.mark.servers
def test_u0000_in_a_store_namespace_is_dead_lettered_on_postgresql(
    run: Run, nats: Any, postgres: Any
) -> None:
    from tests.conftest import fresh_urls

    url, store = fresh_urls(nats, postgres)
    svc = Service("svc")

    @svc.on({"type": ["t"]}, retry=FAST)
    async def writes(event: Event, ctx: Context) -> None:
        await ctx.store.put("n", event.data)

    stack = Stack("nul", services=[svc])

    async def main() -> None:
        async with stack.start(url, store=store) as rt:
            raw = {"type": "t", "source": "x", "id": "a", "data": 1, "tenant": "t\u0000"}
            await rt.engine.append("bus.default", [("k", msgspec.json.encode(raw))])
            good = await rt.publish(Event(type="t", source="x", data=2, tenant="t2",
                                          partitionkey="k"))
            await rt.drain(timeout=20)
            assert await rt.store("svc", tenant="t2").get("n") == 2
            letters = await rt.dead_letters()
            assert len(letters) == 1 and letters[0].event is not None
            assert letters[0].event.id == "a" and "U+0000" in letters[0].error
            assert good.id != "a" and rt.health()["status"] == "ok"

    run(main())


async def until(check: Callable[[], bool]) -> None:
    """Wait for a state the runtime reaches by itself (polled; bounded for a hung runtime)."""
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the runtime never reached the state waited for")


def test_a_consumer_task_that_dies_is_logged_at_once_restarted_and_reported_down(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    svc = Service("svc")
    handled: list[str] = []

    @svc.on({"type": ["t"]})
    async def h(event: Event) -> None:
        handled.append(event.id)

    stack = Stack("crashy", services=[svc])
    broken = asyncio.Event()
    broken.set()

    async def main() -> None:
        async with stack.start("memory") as rt:
            consumer = rt.consumers[0]
            real_step = consumer._step

            async def step() -> None:  # a bug outside any one record's handling
                if broken.is_set():
                    raise RuntimeError("consumer bug")
                await real_step()

            consumer._step = step  # type: ignore[method-assign]
            app = rt.asgi()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await until(lambda: "svc.h" in rt.health()["down"])
                # Logged as soon as it happened, not at shutdown.
                assert any("svc.h stopped unexpectedly" in r.getMessage() and r.exc_info
                           for r in caplog.records)
                reply = await client.get("/healthz")
                assert reply.status_code == 503
                assert "RuntimeError: consumer bug" in reply.json()["down"]["svc.h"]
                broken.clear()
                await until(lambda: rt.health()["status"] == "ok")
                good = await rt.publish(Event(type="t", source="x"))
                await rt.drain(timeout=10)
                assert handled == [good.id]
                reply = await client.get("/healthz")
                assert reply.status_code == 200
                assert reply.json()["restarts"]["svc.h"] >= 1

    with caplog.at_level(logging.ERROR, logger="setpiece.runtime"):
        run(main())


def test_a_schedule_whose_commit_is_refused_is_dead_lettered_and_fires_again(run: Run) -> None:
    svc = Service("clock")
    ticks: list[int] = []

    @svc.every(0.05)
    async def tick(ctx: Context) -> None:
        ticks.append(len(ticks))
        await ctx.store.put("unstorable" if len(ticks) == 1 else "ticks", len(ticks))

    stack = Stack("clocked", services=[svc])

    async def main() -> None:
        async with stack.start("memory") as rt:
            engine = rt.engine
            real_commit = engine.commit

            async def commit(work: Any) -> Any:
                if any(w.key == "unstorable" for w in work.writes):
                    raise RefusedError("test engine refused the unit: key 'unstorable'")
                return await real_commit(work)

            engine.commit = commit  # type: ignore[method-assign]
            await until(lambda: len(ticks) >= 3)
            await rt.drain(timeout=10)
            letters = await rt.dead_letters()
            assert letters and "RefusedError" in letters[0].error
            assert letters[0].handler == "clock.tick"
            assert rt.health() == {"status": "ok", "down": {}, "restarts": {}}

    run(main())


def test_dead_letters_of_events_the_edge_would_refuse_are_listed_raw(run: Run) -> None:
    svc = Service("svc")

    @svc.on({"type": ["t"]}, retry=FAST)
    async def fails(event: Event) -> None:
        raise ValueError("data: not expected")

    stack = Stack("listing", services=[svc])

    async def main() -> None:
        async with stack.start("memory") as rt:
            # An extension named like EventBridge's "detail": decoded, handled, failed; its
            # dict form is not one Event.from_dict reads back.
            raw = {"type": "t", "source": "x", "id": "a", "extensions": {"detail": 1}}
            await rt.engine.append("bus.default", [(None, msgspec.json.encode(raw))])
            await rt.drain(timeout=10)
            [letter] = await rt.dead_letters()
            assert letter.event is None and '"detail":1' in (letter.raw or "")
            assert letter.error == "ValueError: data: not expected"

    run(main())


def test_a_publish_the_engine_refuses_fails_that_caller_alone(run: Run) -> None:
    """Concurrent publishes are committed together; a refused one must not fail the others."""
    stack, handled = poison_stack()

    async def main() -> None:
        async with stack.start("memory") as rt:
            engine = rt.engine
            real_commit = engine.commit

            async def commit(work: Any) -> Any:
                if any(b"unstorable" in value for _, _, value in work.appends):
                    raise RefusedError("test engine refused the unit: 'unstorable'")
                return await real_commit(work)

            engine.commit = commit  # type: ignore[method-assign]
            events = [Event(type="t", source="x", data={"a": n}) for n in range(4)]
            bad = Event(type="t", source="x", data={"a": "unstorable"})
            results = await asyncio.gather(
                *(rt.publish(e) for e in (*events[:2], bad, *events[2:])),
                return_exceptions=True,
            )
            assert isinstance(results[2], RefusedError)
            assert [r.id for r in results if isinstance(r, Event)] == [e.id for e in events]
            await rt.drain(timeout=10)
            assert sorted(handled) == sorted(e.id for e in events)

    run(main())
