"""Rung 1 of the conformance suite: :class:`~setpiece.engine.contract.Log` — append-only
partitioned streams, read from an offset, trimmed, waited on."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from setpiece.engine.conformance._case import EngineTestCase, _promptly, _read_all, engine_test
from setpiece.engine.contract import (
    Engine,
    OffsetCommit,
    StreamSpec,
    UnitOfWork,
    partition_for,
)
from setpiece.errors import ConfigError

__all__ = ["LogConformance"]


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
    async def test_create_stream_changes_retention(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2, retention=3600.0))
        await engine.append("orders", [("k", b"v")])
        await engine.create_stream(StreamSpec("orders", 2, retention=None))
        assert await engine.streams() == [StreamSpec("orders", 2, None)]
        await engine.create_stream(StreamSpec("orders", 2, retention=60.0))
        assert await engine.streams() == [StreamSpec("orders", 2, 60.0)]
        assert sum(await engine.end_offsets("orders")) == 1, "a new retention keeps records"

    @engine_test
    async def test_drop_stream(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await engine.create_stream(StreamSpec("refunds", 1))
        await engine.append("orders", [("a", b"1"), ("b", b"2")])
        await engine.append("refunds", [("a", b"1")])
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("billing", "orders", 0, 0, 1)]))
        await engine.drop_stream("orders")
        assert await engine.streams() == [StreamSpec("refunds", 1)]
        assert ("billing", "orders") not in await engine.groups()
        with pytest.raises(ConfigError):
            await engine.append("orders", [("a", b"3")])
        await engine.drop_stream("orders")  # gone already: harmless
        await engine.drop_stream("never-was")
        # The name is free again, with any partition count, and starts empty.
        await engine.create_stream(StreamSpec("orders", 3))
        assert await engine.end_offsets("orders") == [0, 0, 0]
        assert await engine.committed("billing", "orders") == {0: 0, 1: 0, 2: 0}
        await engine.append("orders", [("a", b"4")])
        part = partition_for("a", 3)
        assert [r.value for r in await _read_all(engine, "orders", part)] == [b"4"]
        assert sum(await engine.end_offsets("refunds")) == 1, "other streams are untouched"

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
