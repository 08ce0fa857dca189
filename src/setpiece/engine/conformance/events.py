"""The event-sequence part of rung 3 (:class:`~setpiece.engine.contract.Store`): appending with
an expected version (event sourcing), atomic with the rest of the unit of work, refused with
ConflictError when another writer got there first; reads in version order."""

from __future__ import annotations

import asyncio

from setpiece.engine.conformance._case import EngineTestCase, _read_all, engine_test, peer_test
from setpiece.engine.contract import Engine, EventAppend, KVWrite, StreamSpec, UnitOfWork
from setpiece.errors import ConflictError

__all__ = ["EventStoreConformance"]


def _append(id: str, expected: int, *values: bytes, ns: str = "acct") -> EventAppend:
    return EventAppend(ns, id, expected, values)


class EventStoreConformance(EngineTestCase):
    """Event sequences: append with an expected version, read back in order."""

    @engine_test
    async def test_events_append_and_read_in_version_order(self, engine: Engine) -> None:
        assert await engine.read_events("acct", "a1") == []
        await engine.commit(UnitOfWork(events=[_append("a1", 0, b"e1", b"e2")]))
        await engine.commit(UnitOfWork(events=[_append("a1", 2, b"e3")]))
        assert await engine.read_events("acct", "a1") == [(1, b"e1"), (2, b"e2"), (3, b"e3")]
        assert await engine.read_events("acct", "a1", after=1, limit=1) == [(2, b"e2")]
        assert await engine.read_events("acct", "a1", after=3) == []
        assert await engine.read_events("other", "a1") == []  # namespaces are apart

    @engine_test
    async def test_events_stale_expected_version_is_a_conflict_and_writes_nothing(
        self, engine: Engine
    ) -> None:
        await engine.create_stream(StreamSpec("out", 1))
        await engine.commit(UnitOfWork(events=[_append("a1", 0, b"e1")]))
        for expected in (0, 2):  # behind (another writer got there first), and ahead
            try:
                await engine.commit(UnitOfWork(
                    events=[_append("a2", 0, b"x"), _append("a1", expected, b"lost")],
                    writes=[KVWrite("snap", "a1", b"s")],
                    appends=[("out", "a1", b"published")],
                ))
            except ConflictError:
                pass
            else:
                raise AssertionError(f"expected version {expected} of version 1 committed")
        assert await engine.read_events("acct", "a1") == [(1, b"e1")]
        assert await engine.read_events("acct", "a2") == []
        assert await engine.kv_get("snap", ["a1"]) == {}
        assert await engine.end_offsets("out") == [0]

    @engine_test
    async def test_events_commit_with_the_outbox_and_state(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("out", 2))
        positions = await engine.commit(UnitOfWork(
            events=[_append("a1", 0, b"e1", b"e2")],
            writes=[KVWrite("snap", "a1", b"s2")],
            appends=[("out", "a1", b"e1"), ("out", "a1", b"e2")],
        ))
        assert len(positions) == 2
        assert [v for v, _ in await engine.read_events("acct", "a1")] == [1, 2]
        assert (await engine.kv_get("snap", ["a1"]))["a1"][0] == b"s2"
        part = positions[0][1]
        assert [r.value for r in await _read_all(engine, "out", part)] == [b"e1", b"e2"]

    @engine_test
    async def test_events_two_appends_to_one_sequence_in_a_unit(self, engine: Engine) -> None:
        await engine.commit(UnitOfWork(events=[_append("a1", 0, b"e1"), _append("a1", 1, b"e2")]))
        assert await engine.read_events("acct", "a1") == [(1, b"e1"), (2, b"e2")]
        try:  # the second append does not follow the first: the unit is refused whole
            await engine.commit(UnitOfWork(events=[_append("a1", 2, b"x"), _append("a1", 2, b"y")]))
        except ConflictError:
            pass
        else:
            raise AssertionError("two appends expecting the same version both committed")
        assert len(await engine.read_events("acct", "a1")) == 2

    @engine_test
    async def test_events_racing_writers_one_wins_per_version(self, engine: Engine) -> None:
        """Many concurrent writers, each reading the version then appending: every version is
        written once, and every refusal is a ConflictError."""
        won: list[int] = []

        async def writer(n: int) -> None:
            for _ in range(50):
                version = len(await engine.read_events("acct", "hot"))
                try:
                    await engine.commit(
                        UnitOfWork(events=[_append("hot", version, b"w%d" % n)])
                    )
                except ConflictError:
                    await asyncio.sleep(0)
                    continue
                won.append(version + 1)
                return

        await asyncio.gather(*(writer(n) for n in range(8)))
        read = await engine.read_events("acct", "hot")
        assert [v for v, _ in read] == list(range(1, len(read) + 1))
        assert sorted(won) == [v for v, _ in read]

    @engine_test
    async def test_event_sequences_page_through_ids(self, engine: Engine) -> None:
        for id_ in ("b", "a", "c"):
            await engine.commit(UnitOfWork(events=[_append(id_, 0, b"1", b"2")]))
        await engine.commit(UnitOfWork(events=[_append("z", 0, b"1")], ))
        await engine.commit(UnitOfWork(events=[_append("a", 0, b"1", ns="other")]))
        assert await engine.event_sequences("acct", limit=2) == [("a", 2), ("b", 2)]
        assert await engine.event_sequences("acct", after="b") == [("c", 2), ("z", 1)]
        assert await engine.event_sequences("none") == []

    @peer_test
    async def test_events_conflict_across_instances(self, engine: Engine, peer: Engine) -> None:
        await engine.commit(UnitOfWork(events=[_append("a1", 0, b"mine")]))
        try:
            await peer.commit(UnitOfWork(events=[_append("a1", 0, b"theirs")]))
        except ConflictError:
            pass
        else:
            raise AssertionError("a second instance appended at a version already taken")
        await peer.commit(UnitOfWork(events=[_append("a1", 1, b"next")]))
        assert await engine.read_events("acct", "a1") == [(1, b"mine"), (2, b"next")]
