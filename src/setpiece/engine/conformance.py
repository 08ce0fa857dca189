"""The engine conformance suite: abstract test cases every engine subclasses.

One class per rung of the contract (:mod:`setpiece.engine.contract`), plus cross-instance tests
for engines that several processes share, and :class:`EngineSuite`, which inherits them all::

    from setpiece.engine import Engine, open_engine
    from setpiece.engine.conformance import EngineSuite

    class TestMyEngine(EngineSuite):
        async def make_engine(self) -> Engine:
            return await open_engine("myengine://...")        # fresh, empty storage

        async def make_peer_engine(self, engine: Engine) -> Engine | None:
            return await open_engine(engine.url)              # a second instance, same storage

Every test opens a fresh engine with :meth:`EngineTestCase.make_engine`, runs its async body
with :func:`asyncio.run` (no pytest-asyncio needed) and closes the engine. Tests that need a
second instance on the same storage skip when :meth:`EngineTestCase.make_peer_engine` returns
None (the default; an in-memory engine has no second instance).

This module is test code shipped in the package: it imports pytest, and nothing in setpiece's
runtime imports it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from setpiece.engine.contract import (
    Engine,
    KVRead,
    KVWrite,
    OffsetCommit,
    StreamSpec,
    Timer,
    UnitOfWork,
    partition_for,
)
from setpiece.errors import ConfigError, ConflictError, EngineError, RefusedError

__all__ = [
    "EngineConformance",
    "EngineSuite",
    "EngineTestCase",
    "GroupLogConformance",
    "LogConformance",
    "PeerConformance",
    "StoreConformance",
    "engine_test",
    "peer_test",
]

# Bounds for "this happens promptly": generous, so a loaded CI machine never flakes. A correct
# engine takes milliseconds; a broken one (no wake-up at all) takes the full bound.
PROMPT = 5.0
# A session timeout short enough to sleep past in a test.
SESSION = 0.3


_Case = TypeVar("_Case", bound="EngineTestCase")
_Body = Callable[[Engine], Awaitable[None]]
_PairBody = Callable[[Engine, Engine], Awaitable[None]]


class EngineTestCase:
    """The base of every conformance class: engine factories and the coroutine runner."""

    #: Seconds one test may take before it fails (a hung engine must not hang the suite).
    test_timeout: float = 60.0

    async def make_engine(self) -> Engine:
        """A new engine on fresh, empty storage. Subclasses must provide it."""
        raise NotImplementedError(f"{type(self).__name__} must define make_engine()")

    async def make_peer_engine(self, engine: Engine) -> Engine | None:
        """A second instance on the same storage as ``engine``, as another process would open
        it; None (the default) skips the cross-instance tests."""
        return None

    def run(self, body: _Body) -> None:
        """Open a fresh engine, run ``body(engine)`` on a new event loop, close the engine."""

        async def main() -> None:
            engine = await self.make_engine()
            try:
                async with asyncio.timeout(self.test_timeout):
                    await body(engine)
            finally:
                await engine.close()

        asyncio.run(main())

    def run_pair(self, body: _PairBody) -> None:
        """Like :meth:`run` with two instances on one storage; skips without a peer."""

        async def main() -> None:
            engine = await self.make_engine()
            try:
                peer = await self.make_peer_engine(engine)
                if peer is None:
                    pytest.skip(f"{type(self).__name__}: no second instance on the same storage")
                try:
                    async with asyncio.timeout(self.test_timeout):
                        await body(engine, peer)
                finally:
                    await peer.close()
            finally:
                await engine.close()

        asyncio.run(main())


def _sync_test(fn: Callable[..., Any], test: Callable[[Any], None]) -> Callable[[Any], None]:
    # No functools.wraps: pytest would follow __wrapped__ and ask for an ``engine`` fixture.
    test.__name__ = fn.__name__
    test.__qualname__ = fn.__qualname__
    test.__doc__ = fn.__doc__
    test.__module__ = fn.__module__
    return test


def engine_test(
    fn: Callable[[_Case, Engine], Coroutine[Any, Any, None]],
) -> Callable[[_Case], None]:
    """Turn ``async def test_x(self, engine)`` into a plain pytest test run by :meth:`run`."""

    def test(self: _Case) -> None:
        self.run(lambda engine: fn(self, engine))

    return _sync_test(fn, test)


def peer_test(
    fn: Callable[[_Case, Engine, Engine], Coroutine[Any, Any, None]],
) -> Callable[[_Case], None]:
    """Turn ``async def test_x(self, engine, peer)`` into a test run by :meth:`run_pair`."""

    def test(self: _Case) -> None:
        self.run_pair(lambda engine, peer: fn(self, engine, peer))

    return _sync_test(fn, test)


async def _promptly(aw: Awaitable[Any], what: str, bound: float = PROMPT) -> Any:
    """Await ``aw``; fail the test (not hang it) if it takes longer than ``bound`` seconds."""
    try:
        async with asyncio.timeout(bound):
            return await aw
    except TimeoutError:
        raise AssertionError(f"{what}: did not happen within {bound} s") from None


async def _read_all(engine: Engine, stream: str, partition: int, page: int = 1000) -> list[Any]:
    records: list[Any] = []
    offset = (await engine.start_offsets(stream))[partition]
    while True:
        batch = await engine.read(stream, partition, offset, page)
        if not batch:
            return records
        records.extend(batch)
        offset = batch[-1].offset + 1


# -- rung 1: Log ---------------------------------------------------------------------------------


class LogConformance(EngineTestCase):
    """Rung 1: partitioned, append-only, ordered logs."""

    @engine_test
    async def test_streams_empty_at_first(self, engine: Engine) -> None:
        assert await engine.streams() == []

    @engine_test
    async def test_create_stream_is_idempotent(self, engine: Engine) -> None:
        spec = StreamSpec("orders", partitions=3, retention=3600.0)
        await engine.create_stream(spec)
        await engine.append("orders", [("k", b"v")])
        await engine.create_stream(spec)
        assert await engine.streams() == [spec]
        assert sum(await engine.end_offsets("orders")) == 1, "re-creating must keep records"

    @engine_test
    async def test_streams_lists_every_stream(self, engine: Engine) -> None:
        specs = [StreamSpec("b", 2), StreamSpec("a", 1, 60.0), StreamSpec("c", 5)]
        for spec in specs:
            await engine.create_stream(spec)
        got = await engine.streams()
        assert sorted(got, key=lambda s: s.name) == sorted(specs, key=lambda s: s.name)

    @engine_test
    async def test_create_stream_partition_mismatch(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 3))
        with pytest.raises(ConfigError, match="orders"):
            await engine.create_stream(StreamSpec("orders", 4))
        assert [s.partitions for s in await engine.streams()] == [3]

    @engine_test
    async def test_create_stream_needs_a_partition(self, engine: Engine) -> None:
        with pytest.raises(ConfigError):
            await engine.create_stream(StreamSpec("orders", 0))
        assert await engine.streams() == []

    @engine_test
    async def test_unknown_stream(self, engine: Engine) -> None:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: engine.append("nope", [("k", b"v")]),
            lambda: engine.read("nope", 0, 0, 10),
            lambda: engine.end_offsets("nope"),
            lambda: engine.start_offsets("nope"),
            lambda: engine.offsets_for_time("nope", 0.0),
            lambda: engine.trim("nope", time.time()),
        ]
        for call in calls:
            with pytest.raises(ConfigError, match="nope"):
                await call()

    @engine_test
    async def test_read_unknown_partition(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        with pytest.raises(ConfigError):
            await engine.read("orders", 2, 0, 10)

    @engine_test
    async def test_new_stream_offsets(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 3))
        assert await engine.end_offsets("orders") == [0, 0, 0]
        assert await engine.start_offsets("orders") == [0, 0, 0]
        assert await engine.read("orders", 1, 0, 10) == []

    @engine_test
    async def test_append_empty_batch(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        assert await engine.append("orders", []) == []
        assert await engine.end_offsets("orders") == [0, 0]

    @engine_test
    async def test_append_offsets_dense_per_partition(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 3))
        keys = [f"key-{i % 7}" for i in range(40)]
        got = await engine.append("orders", [(k, f"v{i}".encode()) for i, k in enumerate(keys)])
        assert len(got) == len(keys)
        per_partition: dict[int, list[int]] = {}
        for partition, offset in got:
            per_partition.setdefault(partition, []).append(offset)
        for offsets in per_partition.values():
            assert offsets == list(range(len(offsets))), "offsets start at 0, dense, in order"
        more = await engine.append("orders", [(keys[0], b"again")])
        partition = partition_for(keys[0], 3)
        assert more == [(partition, len(per_partition[partition]))]
        ends = await engine.end_offsets("orders")
        assert sum(ends) == len(keys) + 1
        assert ends[partition] == len(per_partition[partition]) + 1

    @engine_test
    async def test_key_picks_partition(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 5))
        keys = [f"customer-{i}" for i in range(60)]
        first = await engine.append("orders", [(k, b"1") for k in keys])
        second = await engine.append("orders", [(k, b"2") for k in reversed(keys)])
        assert [p for p, _ in first] == [partition_for(k, 5) for k in keys]
        assert [p for p, _ in second] == [partition_for(k, 5) for k in reversed(keys)]
        assert len({p for p, _ in first}) > 1, "60 keys over 5 partitions use several"

    @engine_test
    async def test_keyless_round_robin(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("ticks", 4))
        batch = await engine.append("ticks", [(None, b"x")] * 8)
        assert Counter(p for p, _ in batch) == {0: 2, 1: 2, 2: 2, 3: 2}
        singles = [(await engine.append("ticks", [(None, b"y")]))[0][0] for _ in range(4)]
        assert sorted(singles) == [0, 1, 2, 3], "separate appends also go round"

    @engine_test
    async def test_read_back_records(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        before = time.time()
        values = [(f"k{i}" if i % 3 else None, os.urandom(i + 1)) for i in range(30)]
        positions = await engine.append("orders", values)
        after = time.time()
        expected: dict[int, list[tuple[int, str | None, bytes]]] = {0: [], 1: []}
        for (key, value), (partition, offset) in zip(values, positions, strict=True):
            expected[partition].append((offset, key, value))
        for partition in (0, 1):
            records = await engine.read("orders", partition, 0, 100)
            assert [(r.offset, r.key, r.value) for r in records] == expected[partition]
            for r in records:
                assert r.stream == "orders"
                assert r.partition == partition
                assert isinstance(r.value, bytes)
                # seconds since the epoch, taken at append time (a loose bound: other clocks)
                assert before - 5 <= r.timestamp <= after + 5
            stamps = [r.timestamp for r in records]
            assert stamps == sorted(stamps)

    @engine_test
    async def test_read_from_offset_with_limit(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 1))
        await engine.append("orders", [(None, str(i).encode()) for i in range(10)])
        page = await engine.read("orders", 0, 3, 4)
        assert [(r.offset, r.value) for r in page] == [(i, str(i).encode()) for i in range(3, 7)]
        tail = await engine.read("orders", 0, 8, 100)
        assert [r.offset for r in tail] == [8, 9]
        assert await engine.read("orders", 0, 10, 100) == []
        assert await engine.read("orders", 0, 50, 100) == []
        assert [r.offset for r in await engine.read("orders", 0, 0, 1)] == [0]

    @engine_test
    async def test_offsets_for_time(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await engine.append("orders", [(None, b"early")] * 4)  # 2 per partition
        await asyncio.sleep(0.1)
        cut = time.time()
        await asyncio.sleep(0.1)
        await engine.append("orders", [(None, b"late")] * 2)  # 1 per partition
        assert await engine.offsets_for_time("orders", cut) == [2, 2]
        assert await engine.offsets_for_time("orders", 0.0) == [0, 0]
        assert await engine.offsets_for_time("orders", time.time() + 3600) == [3, 3]
        for partition, offset in enumerate(await engine.offsets_for_time("orders", cut)):
            records = await engine.read("orders", partition, offset, 10)
            assert [r.value for r in records] == [b"late"]

    @engine_test
    async def test_trim_drops_old_records(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2, retention=1.0))
        await engine.append("orders", [(None, b"old")] * 6)  # 3 per partition
        await asyncio.sleep(0.1)
        cut = time.time()
        await asyncio.sleep(0.1)
        await engine.append("orders", [(None, b"new")] * 2)
        assert await engine.trim("orders", 0.0) == 0
        assert await engine.start_offsets("orders") == [0, 0]
        assert await engine.trim("orders", cut) == 6
        assert await engine.start_offsets("orders") == [3, 3]
        assert await engine.end_offsets("orders") == [4, 4], "trimming keeps end offsets"
        for partition in (0, 1):
            records = await engine.read("orders", partition, 0, 10)
            assert [(r.offset, r.value) for r in records] == [(3, b"new")]
        assert await engine.trim("orders", cut) == 0
        assert await engine.append("orders", [(None, b"next")] * 2) in (
            [(0, 4), (1, 4)],
            [(1, 4), (0, 4)],
        ), "offsets stay dense after a trim"

    @engine_test
    async def test_trim_everything(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await engine.append("orders", [(None, b"x")] * 5)
        await asyncio.sleep(0.05)
        assert await engine.trim("orders", time.time() + 1) == 5
        ends = await engine.end_offsets("orders")
        assert sorted(ends) == [2, 3]
        assert await engine.start_offsets("orders") == ends, "an empty partition starts at end"
        assert await engine.offsets_for_time("orders", 0.0) == ends
        assert await engine.read("orders", 0, 0, 10) == []

    @engine_test
    async def test_trim_is_per_stream(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("a", 1))
        await engine.create_stream(StreamSpec("b", 1))
        await engine.append("a", [(None, b"x")] * 3)
        await engine.append("b", [(None, b"y")] * 3)
        await asyncio.sleep(0.05)
        assert await engine.trim("a", time.time() + 1) == 3
        assert await engine.start_offsets("b") == [0]
        assert len(await engine.read("b", 0, 0, 10)) == 3

    @engine_test
    async def test_wait_wakes_on_append(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        waiter = asyncio.create_task(engine.wait(["orders"], timeout=60))
        await asyncio.sleep(0.05)
        await engine.append("orders", [("k", b"v")])
        await _promptly(waiter, "wait() returning after an append by another task")

    @engine_test
    async def test_wait_wakes_on_commit_with_appends(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        waiter = asyncio.create_task(engine.wait(["orders"], timeout=60))
        await asyncio.sleep(0.05)
        await engine.commit(UnitOfWork(appends=[("orders", "k", b"v")]))
        await _promptly(waiter, "wait() returning after a unit of work appended")

    @engine_test
    async def test_wait_wakes_every_waiter(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("a", 1))
        await engine.create_stream(StreamSpec("b", 1))
        waiters = [
            asyncio.create_task(engine.wait(streams, timeout=60))
            for streams in (["a"], ["a", "b"], ["a"])
        ]
        await asyncio.sleep(0.05)
        await engine.append("a", [(None, b"v")])
        await _promptly(asyncio.gather(*waiters), "every waiter returning after one append")

    @engine_test
    async def test_wait_times_out(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 1))
        started = time.monotonic()
        await _promptly(engine.wait(["orders"], timeout=0.3), "wait(timeout=0.3) returning")
        # Nothing happened, so an idle engine has no reason to return at once: a wait() that
        # never waits turns every consumer into a busy poll.
        assert time.monotonic() - started >= 0.15

    @engine_test
    async def test_large_values(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("blobs", 2))
        values = [os.urandom(200_000), b"\x00" * 200_000, b""]
        positions = await engine.append("blobs", [("same-key", v) for v in values])
        partition = positions[0][0]
        records = await engine.read("blobs", partition, 0, 10)
        assert [r.value for r in records] == values

    @engine_test
    async def test_many_records_in_one_batch(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("bulk", 4))
        n = 10_000
        records = [(f"k{i % 101}", i.to_bytes(4, "big")) for i in range(n)]
        positions = await engine.append("bulk", records)
        assert len(positions) == n
        assert sum(await engine.end_offsets("bulk")) == n
        seen: list[int] = []
        for partition in range(4):
            got = await _read_all(engine, "bulk", partition, page=1000)
            assert [r.offset for r in got] == list(range(len(got)))
            numbers = [int.from_bytes(r.value, "big") for r in got]
            assert numbers == sorted(numbers), "order within a partition is append order"
            assert all(partition_for(r.key, 4) == partition for r in got)
            seen.extend(numbers)
        assert sorted(seen) == list(range(n))


# -- rung 2: GroupLog ----------------------------------------------------------------------------


def _check_assignment(owned: dict[str, tuple[int, ...]], partitions: int) -> None:
    """Every partition owned by exactly one member; sizes differ by at most one."""
    flat = [p for ps in owned.values() for p in ps]
    assert sorted(flat) == list(range(partitions)), f"each partition owned once: {owned}"
    sizes = [len(ps) for ps in owned.values()]
    assert max(sizes) - min(sizes) <= 1, f"partitions spread evenly: {owned}"


class GroupLogConformance(EngineTestCase):
    """Rung 2: consumer groups — live members, assignment, committed offsets."""

    @engine_test
    async def test_single_member_owns_everything(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 4))
        got = await engine.heartbeat("billing", "orders", "m1", session_timeout=30)
        assert got.members == ("m1",)
        assert got.partitions == (0, 1, 2, 3)

    @engine_test
    async def test_heartbeat_unknown_stream(self, engine: Engine) -> None:
        with pytest.raises(ConfigError, match="nope"):
            await engine.heartbeat("billing", "nope", "m1", session_timeout=30)

    @engine_test
    async def test_assignment_spreads_over_sorted_members(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 7))
        for member in ("m3", "m1", "m2"):
            await engine.heartbeat("billing", "orders", member, session_timeout=30)
        owned = {}
        for member in ("m2", "m3", "m1"):
            got = await engine.heartbeat("billing", "orders", member, session_timeout=30)
            assert got.members == ("m1", "m2", "m3")
            assert list(got.partitions) == sorted(got.partitions)
            owned[member] = got.partitions
        _check_assignment(owned, 7)
        again = await engine.heartbeat("billing", "orders", "m1", session_timeout=30)
        assert again.partitions == owned["m1"], "assignment is stable while members are"

    @engine_test
    async def test_more_members_than_partitions(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        members = ["a", "b", "c"]
        for member in members:
            await engine.heartbeat("g", "orders", member, session_timeout=30)
        owned = {
            m: (await engine.heartbeat("g", "orders", m, session_timeout=30)).partitions
            for m in members
        }
        assert sorted(p for ps in owned.values() for p in ps) == [0, 1]
        assert sorted(len(ps) for ps in owned.values()) == [0, 1, 1]

    @engine_test
    async def test_groups_are_independent(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await engine.create_stream(StreamSpec("refunds", 2))
        await engine.heartbeat("billing", "orders", "m1", session_timeout=30)
        await engine.heartbeat("billing", "orders", "m2", session_timeout=30)
        other_group = await engine.heartbeat("audit", "orders", "m9", session_timeout=30)
        other_stream = await engine.heartbeat("billing", "refunds", "m9", session_timeout=30)
        assert other_group.members == ("m9",) and other_group.partitions == (0, 1)
        assert other_stream.members == ("m9",) and other_stream.partitions == (0, 1)

    @engine_test
    async def test_leave_moves_partitions_at_once(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 4))
        await engine.heartbeat("billing", "orders", "m1", session_timeout=30)
        both = await engine.heartbeat("billing", "orders", "m2", session_timeout=30)
        assert both.members == ("m1", "m2")
        assert len(both.partitions) == 2
        await engine.leave("billing", "orders", "m1")
        alone = await engine.heartbeat("billing", "orders", "m2", session_timeout=30)
        assert alone.members == ("m2",)
        assert alone.partitions == (0, 1, 2, 3)
        await engine.leave("billing", "orders", "never-joined")  # no error

    @engine_test
    async def test_silent_member_drops_out(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 4))
        await engine.heartbeat("billing", "orders", "m1", session_timeout=SESSION)
        both = await engine.heartbeat("billing", "orders", "m2", session_timeout=SESSION)
        assert both.members == ("m1", "m2")
        await asyncio.sleep(SESSION * 2.5)
        alone = await engine.heartbeat("billing", "orders", "m2", session_timeout=SESSION)
        assert alone.members == ("m2",)
        assert alone.partitions == (0, 1, 2, 3)
        back = await engine.heartbeat("billing", "orders", "m1", session_timeout=SESSION)
        assert back.members == ("m1", "m2"), "a member that heartbeats again rejoins"

    @engine_test
    async def test_heartbeats_keep_a_member(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        for _ in range(4):
            await engine.heartbeat("billing", "orders", "m1", session_timeout=SESSION)
            got = await engine.heartbeat("billing", "orders", "m2", session_timeout=SESSION)
            assert got.members == ("m1", "m2")
            await asyncio.sleep(SESSION / 3)

    @engine_test
    async def test_committed_defaults_to_zero(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 3))
        assert await engine.committed("billing", "orders") == {0: 0, 1: 0, 2: 0}
        with pytest.raises(ConfigError):
            await engine.committed("billing", "nope")

    @engine_test
    async def test_committed_after_commit(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 3))
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("billing", "orders", 1, 0, 7)]))
        assert await engine.committed("billing", "orders") == {0: 0, 1: 7, 2: 0}
        assert await engine.committed("audit", "orders") == {0: 0, 1: 0, 2: 0}

    @engine_test
    async def test_groups_listing(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await engine.create_stream(StreamSpec("refunds", 2))
        assert await engine.groups() == []
        await engine.heartbeat("billing", "orders", "m1", session_timeout=30)
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("audit", "refunds", 0, 0, 1)]))
        await engine.heartbeat("billing", "refunds", "m1", session_timeout=30)
        await engine.heartbeat("passing", "orders", "m1", session_timeout=30)
        await engine.leave("passing", "orders", "m1")
        assert sorted(await engine.groups()) == [
            ("audit", "refunds"),
            ("billing", "orders"),
            ("billing", "refunds"),
        ]


# -- rung 3: Store -------------------------------------------------------------------------------


async def _version(engine: Engine, namespace: str, key: str) -> int:
    got = await engine.kv_get(namespace, [key])
    return got[key][1] if key in got else 0


async def _state(engine: Engine) -> dict[str, Any]:
    """Everything the "full" unit below could change, to compare before and after."""
    return {
        "kv": await engine.kv_get("state", ["a", "b", "c", "gone"]),
        "scan": await engine.kv_scan("state"),
        "ends": await engine.end_offsets("out"),
        "committed": await engine.committed("g", "in"),
        "inbox": await engine.inbox_seen("svc", ["e1", "e2", "e3"]),
        "timers": await engine.timers("t"),
        "next_timer": await engine.next_timer(),
    }


class StoreConformance(EngineTestCase):
    """Rung 3: the transactional store; a unit of work commits all or nothing."""

    async def _setup_full(self, engine: Engine) -> tuple[UnitOfWork, Timer]:
        """Streams and state for a unit that touches everything, and that unit."""
        await engine.create_stream(StreamSpec("in", 2))
        await engine.create_stream(StreamSpec("out", 3))
        old = Timer("t", "old", time.time() - 1, b"fire me")
        await engine.commit(
            UnitOfWork(
                writes=[KVWrite("state", "a", b"a0"), KVWrite("state", "gone", b"x")],
                offsets=[OffsetCommit("g", "in", 0, 0, 4)],
                inbox=[("svc", "e1")],
                timers=[old, Timer("t", "cancel-me", time.time() + 60)],
            )
        )
        full = UnitOfWork(
            reads=[
                KVRead("state", "a", await _version(engine, "state", "a")),
                KVRead("state", "b", 0),
            ],
            writes=[
                KVWrite("state", "a", b"a1"),
                KVWrite("state", "b", b"b1"),
                KVWrite("state", "gone", None),
            ],
            appends=[("out", "k1", b"o1"), ("out", None, b"o2")],
            offsets=[OffsetCommit("g", "in", 0, 4, 6), OffsetCommit("g", "in", 1, 0, 2)],
            inbox=[("svc", "e2"), ("svc", "e3")],
            timers=[Timer("t", "new", time.time() + 30, b"n")],
            cancel_timers=[("t", "cancel-me")],
            fired=[old],
        )
        return full, old

    async def _assert_nothing_applied(self, engine: Engine, work: UnitOfWork) -> None:
        before = await _state(engine)
        with pytest.raises(ConflictError):
            await engine.commit(work)
        assert await _state(engine) == before, "a conflicting unit must change nothing"

    @engine_test
    async def test_kv_get_absent(self, engine: Engine) -> None:
        assert await engine.kv_get("state", ["a", "b"]) == {}
        assert await engine.kv_get("state", []) == {}
        assert await engine.kv_scan("state") == []

    @engine_test
    async def test_kv_write_and_get(self, engine: Engine) -> None:
        blob = os.urandom(100_000)
        await engine.commit(
            UnitOfWork(writes=[KVWrite("state", "a", b"1"), KVWrite("state", "blob", blob)])
        )
        got = await engine.kv_get("state", ["a", "blob", "missing"])
        assert set(got) == {"a", "blob"}
        assert got["a"][0] == b"1"
        assert got["blob"][0] == blob
        assert got["a"][1] != 0 and got["blob"][1] != 0, "version 0 means absent"
        assert await engine.kv_get("other", ["a"]) == {}, "namespaces are separate"

    @engine_test
    async def test_kv_get_many_keys(self, engine: Engine) -> None:
        keys = [f"key-{i:05}" for i in range(2500)]
        await engine.commit(UnitOfWork(writes=[KVWrite("ns", k, k.encode()) for k in keys]))
        got = await engine.kv_get("ns", [*keys, "absent"])
        assert {k: v for k, (v, _) in got.items()} == {k: k.encode() for k in keys}

    @engine_test
    async def test_kv_versions_change_on_every_write(self, engine: Engine) -> None:
        seen = []
        for value in (b"1", b"2", b"2"):
            await engine.commit(UnitOfWork(writes=[KVWrite("state", "k", value)]))
            seen.append(await _version(engine, "state", "k"))
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "k", None)]))
        assert await _version(engine, "state", "k") == 0
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "k", b"1")]))
        seen.append(await _version(engine, "state", "k"))
        assert 0 not in seen
        assert len(set(seen)) == len(seen), (
            f"a rewritten or recreated key gets a new version: {seen}"
        )
        untouched = await _version(engine, "state", "other")
        assert untouched == 0

    @engine_test
    async def test_kv_version_untouched_by_other_keys(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"1")]))
        version = await _version(engine, "state", "a")
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "b", b"1")]))
        await engine.commit(UnitOfWork(writes=[KVWrite("other", "a", b"1")]))
        assert await _version(engine, "state", "a") == version
        await engine.commit(
            UnitOfWork(reads=[KVRead("state", "a", version)], writes=[KVWrite("state", "c", b"")])
        )

    @engine_test
    async def test_kv_delete(self, engine: Engine) -> None:
        await engine.commit(
            UnitOfWork(writes=[KVWrite("state", "a", b"1"), KVWrite("state", "b", b"2")])
        )
        await engine.commit(
            UnitOfWork(writes=[KVWrite("state", "a", None), KVWrite("state", "never", None)])
        )
        assert set(await engine.kv_get("state", ["a", "b", "never"])) == {"b"}
        assert await engine.kv_scan("state") == [("b", b"2")]

    @engine_test
    async def test_kv_last_write_in_a_unit_wins(self, engine: Engine) -> None:
        await engine.commit(
            UnitOfWork(
                writes=[
                    KVWrite("state", "a", b"1"),
                    KVWrite("state", "a", None),
                    KVWrite("state", "b", None),
                    KVWrite("state", "b", b"2"),
                    KVWrite("state", "c", b"1"),
                    KVWrite("state", "c", b"3"),
                ]
            )
        )
        assert await engine.kv_scan("state") == [("b", b"2"), ("c", b"3")]

    @engine_test
    async def test_kv_empty_value_is_not_a_delete(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"")]))
        got = await engine.kv_get("state", ["a"])
        assert got["a"][0] == b""
        assert await engine.kv_scan("state") == [("a", b"")]

    @engine_test
    async def test_kv_scan(self, engine: Engine) -> None:
        keys = ["user:2", "user:10", "user:1", "users", "order:1", "user:3", "u"]
        await engine.commit(UnitOfWork(writes=[KVWrite("ns", k, k.encode()) for k in keys]))
        await engine.commit(UnitOfWork(writes=[KVWrite("other", "user:0", b"no")]))
        assert await engine.kv_scan("ns") == [(k, k.encode()) for k in sorted(keys)]
        assert [k for k, _ in await engine.kv_scan("ns", "user:")] == [
            "user:1",
            "user:10",
            "user:2",
            "user:3",
        ]
        assert [k for k, _ in await engine.kv_scan("ns", "user:", limit=2)] == [
            "user:1",
            "user:10",
        ]
        assert [k for k, _ in await engine.kv_scan("ns", "user")] == [
            "user:1",
            "user:10",
            "user:2",
            "user:3",
            "users",
        ]
        assert await engine.kv_scan("ns", "zzz") == []
        assert await engine.kv_scan("nothing") == []

    @engine_test
    async def test_kv_scan_prefix_is_literal(self, engine: Engine) -> None:
        keys = ["a_b", "axb", "a%c", "abc", "a\\d", "a.e", "a*f"]
        await engine.commit(UnitOfWork(writes=[KVWrite("ns", k, b"") for k in keys]))
        for prefix in ("a_", "a%", "a\\", "a.", "a*"):
            got = [k for k, _ in await engine.kv_scan("ns", prefix)]
            assert got == [k for k in sorted(keys) if k.startswith(prefix)], prefix

    @engine_test
    async def test_kv_scan_order_is_code_point_order(self, engine: Engine) -> None:
        # Key order is Python's str order (code points), whatever the database's collation.
        keys = ["b", "B", "a", "A", "_", "0", "é", "z", "Z", "ä", "日本", "~"]
        await engine.commit(UnitOfWork(writes=[KVWrite("ns", k, b"") for k in keys]))
        assert [k for k, _ in await engine.kv_scan("ns")] == sorted(keys)
        await engine.commit(UnitOfWork(writes=[KVWrite("ns", "éa", b""), KVWrite("ns", "éb", b"")]))
        assert [k for k, _ in await engine.kv_scan("ns", "é")] == ["é", "éa", "éb"]

    @engine_test
    async def test_kv_against_a_model(self, engine: Engine) -> None:
        """Random units of work, some with stale reads, checked against a plain dict."""
        rng = random.Random(20240601)
        keys = [f"k{i}" for i in range(8)]
        model: dict[str, bytes] = {}
        stale: dict[str, int] = {}  # a version each key had once, no longer current
        conflicts = 0
        for step in range(300):
            current = {k: v for k, (_, v) in (await engine.kv_get("m", keys)).items()}
            reads = []
            expect_conflict = False
            for key in rng.sample(keys, rng.randint(0, 3)):
                if key in stale and rng.random() < 0.15:
                    reads.append(KVRead("m", key, stale[key]))
                    expect_conflict = True
                else:
                    reads.append(KVRead("m", key, current.get(key, 0)))
            writes = [
                KVWrite("m", key, None if rng.random() < 0.25 else f"{step}".encode())
                for key in rng.choices(keys, k=rng.randint(1, 4))
            ]
            work = UnitOfWork(reads=reads, writes=writes)
            if expect_conflict:
                conflicts += 1
                with pytest.raises(ConflictError):
                    await engine.commit(work)
            else:
                await engine.commit(work)
                for key, value in {w.key: w.value for w in writes}.items():  # last write wins
                    before = current.get(key, 0)
                    if before or value is not None:  # the version seen before is outdated now
                        stale[key] = before
                    if value is None:
                        model.pop(key, None)
                    else:
                        model[key] = value
            assert await engine.kv_scan("m") == sorted(model.items()), f"step {step}"
        assert conflicts > 10, "the model exercised conflicts"

    @engine_test
    async def test_empty_unit(self, engine: Engine) -> None:
        assert await engine.commit(UnitOfWork()) == []

    @engine_test
    async def test_a_value_the_engine_cannot_store_is_refused(self, engine: Engine) -> None:
        # A lone surrogate has no UTF-8 form: no engine can store it. (U+0000, which SQLite
        # stores and PostgreSQL refuses, is left to the engines' own tests.)
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"1")]))
        for work in (
            UnitOfWork(writes=[KVWrite("state", "a", b"2"), KVWrite("state", "\ud800", b"x")]),
            UnitOfWork(writes=[KVWrite("state", "a", b"2")], inbox=[("svc", "e\udc00")]),
        ):
            with pytest.raises(RefusedError):
                await engine.commit(work)
        assert await engine.kv_scan("state") == [("a", b"1")], "a refused unit changes nothing"
        assert await engine.inbox_seen("svc", ["e"]) == set()

    @engine_test
    async def test_stale_read_conflicts(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"1")]))
        seen = await _version(engine, "state", "a")
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"2")]))
        with pytest.raises(ConflictError):
            await engine.commit(
                UnitOfWork(
                    reads=[KVRead("state", "a", seen)],
                    writes=[KVWrite("state", "a", b"3"), KVWrite("state", "b", b"3")],
                )
            )
        assert await engine.kv_scan("state") == [("a", b"2")]

    @engine_test
    async def test_read_of_absent_key_conflicts_when_created(self, engine: Engine) -> None:
        work = UnitOfWork(reads=[KVRead("state", "a", 0)], writes=[KVWrite("state", "a", b"mine")])
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"theirs")]))
        with pytest.raises(ConflictError):
            await engine.commit(work)
        assert (await engine.kv_get("state", ["a"]))["a"][0] == b"theirs"

    @engine_test
    async def test_read_of_deleted_key_conflicts(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"1")]))
        seen = await _version(engine, "state", "a")
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", None)]))
        with pytest.raises(ConflictError):
            await engine.commit(
                UnitOfWork(reads=[KVRead("state", "a", seen)], writes=[KVWrite("state", "b", b"")])
            )
        assert await engine.kv_scan("state") == []

    @engine_test
    async def test_fresh_reads_commit(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"1")]))
        for i in range(3):
            seen = await _version(engine, "state", "a")
            await engine.commit(
                UnitOfWork(
                    reads=[KVRead("state", "a", seen), KVRead("state", "absent", 0)],
                    writes=[KVWrite("state", "a", str(i).encode())],
                )
            )
        assert (await engine.kv_get("state", ["a"]))["a"][0] == b"2"

    @engine_test
    async def test_offset_compare_and_set(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("in", 2))
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 0, 5)]))
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 0, 7)]))
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 6, 7)]))
        assert await engine.committed("g", "in") == {0: 5, 1: 0}
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 5, 7)]))
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 1, 0, 1)]))
        assert await engine.committed("g", "in") == {0: 7, 1: 1}

    @engine_test
    async def test_offset_commit_unknown_partition(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("in", 2))
        with pytest.raises(ConfigError):
            await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 2, 0, 1)]))
        with pytest.raises(ConfigError, match="nope"):
            await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "nope", 0, 0, 1)]))
        assert await engine.groups() == []

    @engine_test
    async def test_inbox(self, engine: Engine) -> None:
        assert await engine.inbox_seen("svc", ["e1"]) == set()
        await engine.commit(UnitOfWork(inbox=[("svc", "e1"), ("svc", "e2")]))
        assert await engine.inbox_seen("svc", ["e1", "e2", "e3"]) == {"e1", "e2"}
        assert await engine.inbox_seen("svc", []) == set()
        assert await engine.inbox_seen("other", ["e1"]) == set(), "inboxes are per consumer"
        await engine.commit(UnitOfWork(inbox=[("other", "e1")]))
        with pytest.raises(ConflictError):
            await engine.commit(
                UnitOfWork(inbox=[("svc", "e3"), ("svc", "e1")], writes=[KVWrite("s", "k", b"")])
            )
        assert await engine.inbox_seen("svc", ["e3"]) == set()
        assert await engine.kv_scan("s") == []

    @engine_test
    async def test_inbox_duplicate_within_a_unit(self, engine: Engine) -> None:
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(inbox=[("svc", "e1"), ("svc", "e1")]))
        assert await engine.inbox_seen("svc", ["e1"]) == set()

    @engine_test
    async def test_inbox_seen_many(self, engine: Engine) -> None:
        ids = [f"evt-{i}" for i in range(1500)]
        await engine.commit(UnitOfWork(inbox=[("svc", e) for e in ids[::2]]))
        assert await engine.inbox_seen("svc", ids) == set(ids[::2])

    @engine_test
    async def test_prune_inbox(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(inbox=[("svc", "e1"), ("other", "e1")]))
        assert await engine.prune_inbox(time.time() - 3600) == 0
        assert await engine.inbox_seen("svc", ["e1"]) == {"e1"}
        await asyncio.sleep(0.05)
        assert await engine.prune_inbox(time.time() + 1) == 2
        assert await engine.inbox_seen("svc", ["e1"]) == set()
        await engine.commit(UnitOfWork(inbox=[("svc", "e1")]))  # forgotten, so accepted again
        assert await engine.prune_inbox(0.0) == 0

    @engine_test
    async def test_appends_in_a_unit(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("out", 3))
        await engine.create_stream(StreamSpec("audit", 1))
        await engine.append("out", [("k1", b"before")])
        got = await engine.commit(
            UnitOfWork(
                appends=[
                    ("out", "k1", b"a"),
                    ("audit", None, b"b"),
                    ("out", "k1", b"c"),
                    ("out", "k2", b"d"),
                ]
            )
        )
        p1, p2 = partition_for("k1", 3), partition_for("k2", 3)
        assert got[0] == ("out", p1, 1)
        assert got[1] == ("audit", 0, 0)
        assert got[2] == ("out", p1, 2)
        assert got[3][:2] == ("out", p2)
        for (stream, partition, offset), (_, key, value) in zip(
            got,
            [("out", "k1", b"a"), ("audit", None, b"b"), ("out", "k1", b"c"), ("out", "k2", b"d")],
            strict=True,
        ):
            [record] = await engine.read(stream, partition, offset, 1)
            assert (record.offset, record.key, record.value) == (offset, key, value)

    @engine_test
    async def test_appends_to_unknown_stream(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("out", 1))
        with pytest.raises(ConfigError, match="nope"):
            await engine.commit(
                UnitOfWork(
                    writes=[KVWrite("state", "a", b"1")],
                    appends=[("out", None, b"x"), ("nope", None, b"y")],
                )
            )
        assert await engine.kv_scan("state") == []
        assert await engine.end_offsets("out") == [0]

    @engine_test
    async def test_full_unit_commits_everything(self, engine: Engine) -> None:
        full, old = await self._setup_full(engine)
        ends = await engine.end_offsets("out")
        got = await engine.commit(full)
        assert [s for s, _, _ in got] == ["out", "out"]
        assert sum(await engine.end_offsets("out")) == sum(ends) + 2
        state = await _state(engine)
        assert {k: v for k, (v, _) in state["kv"].items()} == {"a": b"a1", "b": b"b1"}
        assert state["committed"] == {0: 6, 1: 2}
        assert state["inbox"] == {"e1", "e2", "e3"}
        assert [t.id for t in state["timers"]] == ["new"]
        assert old not in await engine.due_timers(time.time() + 3600)

    @engine_test
    async def test_conflict_on_read_applies_nothing(self, engine: Engine) -> None:
        full, _ = await self._setup_full(engine)
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "a", b"raced")]))
        await self._assert_nothing_applied(engine, full)

    @engine_test
    async def test_conflict_on_absent_read_applies_nothing(self, engine: Engine) -> None:
        full, _ = await self._setup_full(engine)
        await engine.commit(UnitOfWork(writes=[KVWrite("state", "b", b"raced")]))
        await self._assert_nothing_applied(engine, full)

    @engine_test
    async def test_conflict_on_offset_applies_nothing(self, engine: Engine) -> None:
        full, _ = await self._setup_full(engine)
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 1, 0, 1)]))
        await self._assert_nothing_applied(engine, full)

    @engine_test
    async def test_conflict_on_inbox_applies_nothing(self, engine: Engine) -> None:
        full, _ = await self._setup_full(engine)
        await engine.commit(UnitOfWork(inbox=[("svc", "e3")]))
        await self._assert_nothing_applied(engine, full)

    @engine_test
    async def test_conflict_on_fired_timer_applies_nothing(self, engine: Engine) -> None:
        full, old = await self._setup_full(engine)
        await engine.commit(UnitOfWork(fired=[old]))
        await self._assert_nothing_applied(engine, full)

    @engine_test
    async def test_retry_after_conflict(self, engine: Engine) -> None:
        full, _ = await self._setup_full(engine)
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 1, 0, 1)]))
        with pytest.raises(ConflictError):
            await engine.commit(full)
        # the engine stays usable after a conflict, and the unit can be retried fixed
        full.offsets[1] = OffsetCommit("g", "in", 1, 1, 2)
        got = await engine.commit(full)
        assert len(got) == 2
        assert (await engine.committed("g", "in"))[1] == 2


# -- rung 4: Engine ------------------------------------------------------------------------------


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


# -- two instances on one storage ----------------------------------------------------------------


class PeerConformance(EngineTestCase):
    """Two instances on the same storage, as two processes would share it."""

    @peer_test
    async def test_peer_sees_streams_and_records(self, engine: Engine, peer: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        assert await peer.streams() == [StreamSpec("orders", 2)]
        positions = await engine.append("orders", [("k", b"one")])
        partition, offset = positions[0]
        [record] = await peer.read("orders", partition, offset, 10)
        assert record.value == b"one"
        more = await peer.append("orders", [("k", b"two")])
        assert more == [(partition, offset + 1)], "offsets stay dense across instances"
        assert await engine.end_offsets("orders") == await peer.end_offsets("orders")
        with pytest.raises(ConfigError):
            await peer.create_stream(StreamSpec("orders", 3))

    @peer_test
    async def test_peer_wait_wakes(self, engine: Engine, peer: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        waiter = asyncio.create_task(peer.wait(["orders"], timeout=60))
        await asyncio.sleep(0.1)
        await engine.append("orders", [("k", b"v")])
        await _promptly(waiter, "wait() on one instance after an append on the other")
        waiter = asyncio.create_task(peer.wait(["orders"], timeout=60))
        await asyncio.sleep(0.1)
        await engine.commit(UnitOfWork(appends=[("orders", "k", b"w")]))
        await _promptly(waiter, "wait() on one instance after a commit on the other")

    @peer_test
    async def test_peer_wait_wakes_every_waiter(self, engine: Engine, peer: Engine) -> None:
        await engine.create_stream(StreamSpec("a", 1))
        await engine.create_stream(StreamSpec("b", 1))
        waiters = [
            asyncio.create_task(peer.wait(streams, timeout=60))
            for streams in (["a"], ["a", "b"], ["a"])
        ]
        await asyncio.sleep(0.1)
        await engine.append("a", [(None, b"v")])
        await _promptly(asyncio.gather(*waiters), "every waiter on the other instance returning")

    @peer_test
    async def test_members_on_two_instances_split_partitions(
        self, engine: Engine, peer: Engine
    ) -> None:
        await engine.create_stream(StreamSpec("orders", 6))
        await engine.heartbeat("billing", "orders", "host-a", session_timeout=30)
        await peer.heartbeat("billing", "orders", "host-b", session_timeout=30)
        a = await engine.heartbeat("billing", "orders", "host-a", session_timeout=30)
        b = await peer.heartbeat("billing", "orders", "host-b", session_timeout=30)
        assert a.members == b.members == ("host-a", "host-b")
        _check_assignment({"host-a": a.partitions, "host-b": b.partitions}, 6)
        await peer.leave("billing", "orders", "host-b")
        a = await engine.heartbeat("billing", "orders", "host-a", session_timeout=30)
        assert a.partitions == tuple(range(6))

    @peer_test
    async def test_peer_member_times_out(self, engine: Engine, peer: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await peer.heartbeat("billing", "orders", "host-b", session_timeout=SESSION)
        a = await engine.heartbeat("billing", "orders", "host-a", session_timeout=SESSION)
        assert a.members == ("host-a", "host-b")
        await asyncio.sleep(SESSION * 2.5)
        a = await engine.heartbeat("billing", "orders", "host-a", session_timeout=SESSION)
        assert a.members == ("host-a",)
        assert a.partitions == (0, 1)

    @peer_test
    async def test_offset_cas_across_instances(self, engine: Engine, peer: Engine) -> None:
        await engine.create_stream(StreamSpec("in", 1))
        assert (await engine.committed("g", "in"))[0] == (await peer.committed("g", "in"))[0] == 0
        await engine.commit(
            UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 0, 3)], appends=[("in", None, b"a")])
        )
        with pytest.raises(ConflictError):
            await peer.commit(
                UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 0, 5)], appends=[("in", None, b"b")])
            )
        assert await peer.committed("g", "in") == {0: 3}
        assert await peer.end_offsets("in") == [1]
        await peer.commit(UnitOfWork(offsets=[OffsetCommit("g", "in", 0, 3, 5)]))
        assert await engine.committed("g", "in") == {0: 5}

    @peer_test
    async def test_kv_and_inbox_across_instances(self, engine: Engine, peer: Engine) -> None:
        await engine.commit(UnitOfWork(writes=[KVWrite("s", "k", b"1")], inbox=[("c", "e1")]))
        got = await peer.kv_get("s", ["k"])
        assert got["k"][0] == b"1"
        assert await peer.inbox_seen("c", ["e1"]) == {"e1"}
        version = got["k"][1]
        await engine.commit(UnitOfWork(writes=[KVWrite("s", "k", b"2")]))
        with pytest.raises(ConflictError):
            await peer.commit(
                UnitOfWork(reads=[KVRead("s", "k", version)], writes=[KVWrite("s", "k", b"3")])
            )
        with pytest.raises(ConflictError):
            await peer.commit(UnitOfWork(inbox=[("c", "e1")]))
        assert (await engine.kv_get("s", ["k"]))["k"][0] == b"2"

    @peer_test
    async def test_timers_across_instances(self, engine: Engine, peer: Engine) -> None:
        timer = Timer("t", "a", time.time() - 1, b"p")
        await engine.commit(UnitOfWork(timers=[timer]))
        assert await peer.due_timers(time.time()) == [timer]
        assert await peer.next_timer() == timer.due
        await peer.commit(UnitOfWork(fired=[timer]))
        with pytest.raises(ConflictError):
            await engine.commit(UnitOfWork(fired=[timer]))
        assert await engine.timers("t") == []


class EngineSuite(
    LogConformance,
    GroupLogConformance,
    StoreConformance,
    EngineConformance,
    PeerConformance,
):
    """Every conformance test. Subclass it, define ``make_engine`` (and ``make_peer_engine``)."""
