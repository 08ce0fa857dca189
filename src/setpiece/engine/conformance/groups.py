"""Rung 2 of the conformance suite: :class:`~setpiece.engine.contract.GroupLog` — consumer
groups, live members, partition assignment, committed offsets."""

from __future__ import annotations

import asyncio

import pytest

from setpiece.engine.conformance._case import (
    SESSION,
    EngineTestCase,
    _check_assignment,
    engine_test,
)
from setpiece.engine.contract import Engine, OffsetCommit, StreamSpec, UnitOfWork
from setpiece.errors import ConfigError

__all__ = ["GroupLogConformance"]


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

    @engine_test
    async def test_drop_group(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("orders", 2))
        await engine.commit(UnitOfWork(offsets=[
            OffsetCommit("billing", "orders", 0, 0, 3), OffsetCommit("audit", "orders", 1, 0, 2),
        ]))
        await engine.heartbeat("billing", "orders", "m1", session_timeout=30)
        await engine.drop_group("billing", "orders")
        assert await engine.groups() == [("audit", "orders")]
        assert await engine.committed("billing", "orders") == {0: 0, 1: 0}
        assert await engine.committed("audit", "orders") == {0: 0, 1: 2}
        await engine.drop_group("billing", "orders")  # gone already: harmless
        await engine.drop_group("billing", "never-was")
        # Forgotten offsets start again from 0 (compare-and-set from 0 succeeds).
        await engine.commit(UnitOfWork(offsets=[OffsetCommit("billing", "orders", 0, 0, 1)]))
        assert await engine.committed("billing", "orders") == {0: 1, 1: 0}
