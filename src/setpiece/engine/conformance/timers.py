"""Rung 4 of the conformance suite: :class:`~setpiece.engine.contract.Engine` — durable timers,
and the lifecycle (close)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from setpiece.engine.conformance._case import EngineTestCase, _promptly, engine_test
from setpiece.engine.contract import Engine, KVWrite, StreamSpec, Timer, UnitOfWork
from setpiece.errors import ConflictError, EngineError

__all__ = ["EngineConformance"]


class EngineConformance(EngineTestCase):
    """Rung 4: durable timers, and the lifecycle."""

    @engine_test
    async def test_no_timers(self, engine: Engine) -> None:
        assert await engine.next_timer() is None
        assert await engine.due_timers(time.time() + 1e6) == []
        assert await engine.timers("t") == []

    @engine_test
    async def test_schedule_upsert_cancel(self, engine: Engine) -> None:
        now = time.time()
        first = Timer("t", "a", now + 100.123456789, b"\x00payload")
        await engine.commit(UnitOfWork(timers=[first]))
        assert await engine.timers("t") == [first]
        assert await engine.next_timer() == first.due
        moved = Timer("t", "a", now + 50.5, b"moved")
        await engine.commit(UnitOfWork(timers=[moved]))
        assert await engine.timers("t") == [moved], "scheduling an existing id replaces it"
        await engine.commit(UnitOfWork(cancel_timers=[("t", "a"), ("t", "never")]))
        assert await engine.timers("t") == []
        assert await engine.next_timer() is None

    @engine_test
    async def test_timers_by_namespace(self, engine: Engine) -> None:
        now = time.time()
        timers = [
            Timer("t", "c", now + 3),
            Timer("t", "a", now + 1),
            Timer("u", "a", now + 2),
            Timer("t", "b", now + 2),
        ]
        await engine.commit(UnitOfWork(timers=timers))
        assert [x.id for x in await engine.timers("t")] == ["a", "b", "c"]
        assert await engine.timers("u") == [Timer("u", "a", now + 2)]
        assert await engine.timers("none") == []
        await engine.commit(UnitOfWork(cancel_timers=[("u", "b"), ("t", "a")]))
        assert [x.id for x in await engine.timers("t")] == ["b", "c"]
        assert len(await engine.timers("u")) == 1, "cancel names the namespace"

    @engine_test
    async def test_due_timers(self, engine: Engine) -> None:
        now = time.time()
        timers = [
            Timer("t", "later", now + 3600),
            Timer("t", "b", now - 1),
            Timer("u", "a", now - 3),
            Timer("t", "c", now - 2),
            Timer("t", "exact", now),
        ]
        await engine.commit(UnitOfWork(timers=timers))
        due = await engine.due_timers(now)
        assert [(x.namespace, x.id) for x in due] == [
            ("u", "a"),
            ("t", "c"),
            ("t", "b"),
            ("t", "exact"),
        ]
        assert due[0] == timers[2]
        assert await engine.due_timers(now, limit=2) == due[:2]
        assert await engine.due_timers(now - 10) == []
        assert await engine.next_timer() == now - 3
        assert len(await engine.due_timers(now + 7200)) == 5

    @engine_test
    async def test_fire_timer(self, engine: Engine) -> None:
        now = time.time()
        timer = Timer("t", "a", now - 1, b"p")
        await engine.commit(UnitOfWork(timers=[timer, Timer("t", "b", now + 60)]))
        [due] = await engine.due_timers(now)
        assert due == timer
        await engine.commit(UnitOfWork(fired=[due], writes=[KVWrite("s", "fired", b"1")]))
        assert await engine.due_timers(now) == []
        assert [x.id for x in await engine.timers("t")] == ["b"]
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(fired=[due], writes=[KVWrite("s", "twice", b"1")]))
        assert [k for k, _ in await engine.kv_scan("s")] == ["fired"]

    @engine_test
    async def test_fire_moved_timer_conflicts(self, engine: Engine) -> None:
        now = time.time()
        timer = Timer("t", "a", now - 1)
        await engine.commit(UnitOfWork(timers=[timer]))
        moved = Timer("t", "a", now + 60)
        await engine.commit(UnitOfWork(timers=[moved]))
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(fired=[timer]))
        assert await engine.timers("t") == [moved]
        await engine.commit(UnitOfWork(cancel_timers=[("t", "a")]))
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(fired=[moved]))

    @engine_test
    async def test_fire_and_rearm(self, engine: Engine) -> None:
        now = time.time()
        tick = Timer("cron", "every-minute", now - 1, b"1")
        await engine.commit(UnitOfWork(timers=[tick]))
        nxt = Timer("cron", "every-minute", now + 59, b"2")
        await engine.commit(UnitOfWork(fired=[tick], timers=[nxt]))
        assert await engine.timers("cron") == [nxt]
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(fired=[tick], timers=[nxt]))

    @engine_test
    async def test_timer_in_conflicting_unit_is_not_scheduled(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(inbox=[("svc", "e1")]))
        with pytest.raises(ConflictError):
            await engine.commit(
                UnitOfWork(inbox=[("svc", "e1")], timers=[Timer("t", "a", time.time())])
            )
        assert await engine.timers("t") == []
        assert await engine.next_timer() is None

    @engine_test
    async def test_url(self, engine: Engine) -> None:
        assert isinstance(engine.url, str) and engine.url

    def test_close(self) -> None:
        async def main() -> None:
            engine = await self.make_engine()
            await engine.create_stream(StreamSpec("s", 1))
            await engine.close()
            await engine.close()  # closing twice is harmless
            calls: list[Callable[[], Awaitable[Any]]] = [
                lambda: engine.append("s", [(None, b"x")]),
                lambda: engine.read("s", 0, 0, 1),
                lambda: engine.end_offsets("s"),
                lambda: engine.commit(UnitOfWork(writes=[KVWrite("ns", "k", b"")])),
                lambda: engine.kv_get("ns", ["k"]),
                lambda: engine.due_timers(time.time()),
            ]
            for call in calls:
                with pytest.raises(EngineError):
                    await call()

        asyncio.run(main())

    def test_close_wakes_waiters(self) -> None:
        async def main() -> None:
            engine = await self.make_engine()
            try:
                await engine.create_stream(StreamSpec("s", 1))
                waiter = asyncio.create_task(engine.wait(["s"], timeout=60))
                await asyncio.sleep(0.05)
            finally:
                await engine.close()
            await _promptly(waiter, "wait() returning once the engine is closed")

        asyncio.run(main())
