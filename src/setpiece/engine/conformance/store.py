"""Rung 3 of the conformance suite: :class:`~setpiece.engine.contract.Store` — the
transactional key-value store, and the unit of work that commits state, inbox, appends, offsets
and timers together or not at all."""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import pytest

from setpiece.engine.conformance._case import EngineTestCase, engine_test
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
from setpiece.errors import ConfigError, ConflictError, RefusedError

__all__ = ["StoreConformance"]


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
