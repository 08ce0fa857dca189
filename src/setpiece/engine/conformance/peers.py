"""Two instances of one engine on the same storage, as two processes would share it: streams,
wake-ups, group membership, compare-and-set, inbox and timers seen across instances."""

from __future__ import annotations

import asyncio
import time

import pytest

from setpiece.engine.conformance._case import (
    SESSION,
    EngineTestCase,
    _check_assignment,
    _promptly,
    peer_test,
)
from setpiece.engine.contract import (
    Engine,
    KVRead,
    KVWrite,
    OffsetCommit,
    StreamSpec,
    Timer,
    UnitOfWork,
)
from setpiece.errors import ConfigError, ConflictError

__all__ = ["PeerConformance"]


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
    async def test_a_reader_behind_is_not_answered_by_one_at_the_end(
        self, engine: Engine, peer: Engine
    ) -> None:
        """An instance opened after the appends (it saw none of them) serves two readers of one
        partition, one at the end and one behind it, as the consumers of two hops are: the
        reader behind gets every record, however the reads interleave."""
        await engine.create_stream(StreamSpec("orders", 1))
        await engine.append("orders", [("k", f"v{i}".encode()) for i in range(20)])
        late = await self.make_peer_engine(engine)
        assert late is not None
        try:
            assert await late.read("orders", 0, 20, 10) == [], "nothing past the end"
            assert [r.offset for r in await late.read("orders", 0, 5, 10)] == [*range(5, 15)]
            assert await late.read("orders", 0, 20, 10) == [], "nothing past the end"
            assert [r.offset for r in await late.read("orders", 0, 15, 10)] == [*range(15, 20)]
        finally:
            await late.close()

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
