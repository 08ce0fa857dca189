"""What only the production engine does: servers that restart under it, a relay that crashes
between publishing and deleting, commits whose reply is lost, groups shared by two instances.

Every test checks the log and the state at the end: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import nats.js.errors as nats_errors
import pytest

from setpiece.engine import Engine, KVRead, KVWrite, OffsetCommit, StreamSpec, UnitOfWork
from setpiece.engine import open_engine as _open_engine
from setpiece.engine.nats import NatsEngine
from setpiece.engine.nats.log import PeersOffline
from setpiece.engine.nats.relay import Relay
from setpiece.engine.nats.wire import encode_name
from setpiece.engine.postgres.store import PgStore
from setpiece.engine.servers import (
    NatsCluster,
    NatsServer,
    PostgresServer,
    nats_server,
    postgres_server,
)
from setpiece.errors import ConfigError, ConflictError, EngineError
from tests.engine.conftest import fresh_urls

pytestmark = pytest.mark.servers


def run(body: Awaitable[None], limit: float = 90.0) -> None:
    async def main() -> None:
        async with asyncio.timeout(limit):
            await body

    asyncio.run(main())


async def open_engine(url: str, store: str) -> NatsEngine:
    engine = await _open_engine(url, store=store)
    assert isinstance(engine, NatsEngine)
    return engine


async def read_all(engine: Engine, stream: str) -> list[list[bytes]]:
    """Every partition's values, in offset order (checking offsets are dense)."""
    out = []
    starts = await engine.start_offsets(stream)
    for partition, start in enumerate(starts):
        values: list[bytes] = []
        offset = start
        while batch := await engine.read(stream, partition, offset, 500):
            assert [r.offset for r in batch] == list(range(offset, offset + len(batch)))
            values.extend(r.value for r in batch)
            offset = batch[-1].offset + 1
        out.append(values)
    return out


async def process(engine: Engine, group: str, partitions: tuple[int, ...]) -> int:
    """One exactly-once pass of a consumer: for every new record of ``in``, bump a counter in
    the store, record the event id in the inbox and forward the record to ``out``; the offset
    commits in the same unit. Returns how many records it processed."""
    done = 0
    committed = await engine.committed(group, "in")
    for partition in partitions:
        offset = committed[partition]
        batch = await engine.read("in", partition, offset, 50)
        if not batch:
            continue
        current = await engine.kv_get("counts", ["total"])
        value, version = current.get("total", (b"0", 0))
        work = UnitOfWork(
            reads=[KVRead("counts", "total", version)],
            writes=[KVWrite("counts", "total", str(int(value) + len(batch)).encode())],
            appends=[("out", r.key, r.value) for r in batch],
            offsets=[OffsetCommit(group, "in", partition, offset, batch[-1].offset + 1)],
            inbox=[(group, r.value.decode()) for r in batch],
        )
        try:
            await engine.commit(work)
        except ConflictError:
            continue  # another member (or our own lost reply): reread from the committed offset
        done += len(batch)
    return done


async def drain(engine: Engine, group: str, total: int, partitions: tuple[int, ...]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await process(engine, group, partitions)
        committed = await engine.committed(group, "in")
        if sum(committed.values()) >= total:
            return
        await engine.wait(["in"], 0.2)
    raise AssertionError("the consumer did not catch up")


async def check_exactly_once(engine: Engine, total: int) -> None:
    inputs = sorted(v for part in await read_all(engine, "in") for v in part)
    assert inputs == sorted(f"e{i}".encode() for i in range(total)), "the input log is intact"
    outputs = [v for part in await read_all(engine, "out") for v in part]
    assert Counter(outputs) == Counter(inputs), "every record forwarded exactly once"
    counts = await engine.kv_get("counts", ["total"])
    assert counts["total"][0] == str(total).encode(), "the counter counted each record once"


def keyed(i: int) -> tuple[str, bytes]:
    return f"k{i % 5}", f"e{i}".encode()


# -- restarts -----------------------------------------------------------------------------------


@pytest.fixture
def own_nats() -> Iterator[NatsServer]:
    with nats_server() as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


async def produce_and_consume_through(
    engine: Engine, outage: Callable[[], None], total: int = 240
) -> None:
    await engine.create_stream(StreamSpec("in", 3))
    await engine.create_stream(StreamSpec("out", 2))

    async def produce() -> None:
        for i in range(0, total, 4):
            await engine.append("in", [keyed(j) for j in range(i, i + 4)])
            await asyncio.sleep(0.01)  # spread over the outage

    async def consume() -> None:
        await drain(engine, "g", total, (0, 1, 2))

    producer = asyncio.create_task(produce())
    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.15)  # both are mid-run
    assert not producer.done() and not consumer.done()
    await asyncio.to_thread(outage)
    assert not producer.done(), "appends continue after the outage"
    await asyncio.gather(producer, consumer)
    await check_exactly_once(engine, total)
    # Per-key order is kept in the input log.
    for values in await read_all(engine, "in"):
        by_key: dict[int, list[int]] = {}
        for v in values:
            i = int(v[1:])
            by_key.setdefault(i % 5, []).append(i)
        assert all(seq == sorted(seq) for seq in by_key.values())


@pytest.mark.timeout(300)  # stops and restarts a nats-server
def test_nats_server_crash_and_restart(own_nats: NatsServer, postgres: PostgresServer) -> None:
    url, store = fresh_urls(own_nats, postgres)

    def crash() -> None:
        own_nats.kill()  # SIGKILL: a crash, not a goodbye
        time.sleep(0.3)
        own_nats.start()

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await produce_and_consume_through(engine, crash)
        finally:
            await engine.close()

    run(body())


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_postgres_restart(nats: NatsServer, own_postgres: PostgresServer, how: str) -> None:
    url, store = fresh_urls(nats, own_postgres)

    def outage() -> None:
        if how == "restart":
            own_postgres.stop()  # fast shutdown: open transactions roll back
        else:
            own_postgres.kill()  # immediate shutdown: crash recovery at the next start
        time.sleep(0.3)
        own_postgres.start()

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await produce_and_consume_through(engine, outage)
        finally:
            await engine.close()

    run(body())


# -- the outbox relay ---------------------------------------------------------------------------


@contextlib.contextmanager
def crash_after_publish(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The relaying process dies after publishing, before deleting its outbox rows: its
    deletes never reach PostgreSQL (yields the deletes it attempted)."""
    original = PgStore.delete_relayed
    attempted: list[object] = []

    async def delete_relayed(self: PgStore, upto: dict[tuple[str, int], int]) -> None:
        attempted.append(dict(upto))

    with monkeypatch.context() as patch:
        patch.setattr(PgStore, "delete_relayed", delete_relayed)
        yield attempted
    assert PgStore.delete_relayed is original


async def outbox_rows(store: str) -> int:
    engine = await open_engine_store(store)
    try:
        rows = await engine.fetch("SELECT count(*) FROM sp_outbox")
        return int(rows[0][0])
    finally:
        await engine.close()


async def open_engine_store(store: str) -> PgStore:
    prefix = store.rsplit("schema=", 1)[1]
    return await PgStore.open(store, prefix=prefix)


@pytest.mark.parametrize("recovery", ["next-commit", "background"])
def test_relay_crash_between_publish_and_delete_duplicates_nothing(
    nats: NatsServer, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, recovery: str
) -> None:
    url, store = fresh_urls(nats, postgres)

    async def body() -> None:
        first = await open_engine(url, store)
        await first.create_stream(StreamSpec("s", 1))
        await first.append("s", [(None, b"a"), (None, b"b")])
        with crash_after_publish(monkeypatch) as attempted:
            await first.commit(UnitOfWork(appends=[("s", None, b"c"), ("s", None, b"d")]))
            await first.close()  # the process is gone; its rows stay in the outbox
        assert {("s", 0): 4} in attempted, "it would have deleted them"
        assert await first_records(url, store) == [b"a", b"b", b"c", b"d"], "published..."
        assert await outbox_rows(store) == 2, "...and still in the outbox"
        # Beyond the dedup window, message ids no longer match: the sequence check must hold.
        pg = await open_engine_store(store)
        await pg.execute("UPDATE sp_outbox SET msg_id = msg_id || '-late'")
        await pg.close()

        second = await open_engine(url, store)
        try:
            if recovery == "next-commit":
                assert await second.commit(UnitOfWork(appends=[("s", None, b"e")])) == [("s", 0, 4)]
                for _ in range(50):  # relayed rows are deleted in the background, at once
                    if not await outbox_rows(store):
                        break
                    await asyncio.sleep(0.1)
            else:
                for _ in range(50):  # the background relay takes over within ~3 s
                    if not await outbox_rows(store):
                        break
                    await asyncio.sleep(0.2)
                assert await second.append("s", [(None, b"e")]) == [(0, 4)]
            assert await read_all(second, "s") == [[b"a", b"b", b"c", b"d", b"e"]]
            assert await outbox_rows(store) == 0
        finally:
            await second.close()

    async def first_records(url: str, store: str) -> list[bytes]:
        peek = await open_engine(url, store)
        try:
            return [r.value for r in await peek.read("s", 0, 0, 100)]
        finally:
            await peek.close()

    run(body())


def test_records_a_committer_died_before_relaying_count_in_the_end(
    nats: NatsServer, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process commits to PostgreSQL and dies before relaying: the records are not readable
    yet, but every engine's end offsets count them (a consumer's lag, and so a drain, waits
    for them), and the background relay makes them readable."""
    url, store = fresh_urls(nats, postgres)

    async def body() -> None:
        engine, peer = await open_engine(url, store), await open_engine(url, store)
        try:
            await engine.create_stream(StreamSpec("s", 2))
            await engine.append("s", [("k", b"0")])
            partition = (await engine.append("s", [("k", b"1")]))[0][0]
            with monkeypatch.context() as patch:  # this committer relays nothing any more
                patch.setattr(Relay, "committed", lambda self, lanes, rows: [])
                await engine.append("s", [("k", b"2"), ("k", b"3")])
            ends = [0, 0]
            ends[partition] = 4
            assert await peer.end_offsets("s") == ends
            assert await engine.end_offsets("s") == ends
            assert [r.value for r in await peer.read("s", partition, 0, 10)] == [b"0", b"1"]
            for _ in range(100):  # the background relay takes over within ~3 s
                found = await peer.read("s", partition, 2, 10)
                if found:
                    break
                await asyncio.sleep(0.1)
            assert [r.value for r in found] == [b"2", b"3"]
            assert await peer.end_offsets("s") == ends
        finally:
            await engine.close()
            await peer.close()

    run(body())


def test_relay_resumes_after_nats_was_down_at_commit(
    own_nats: NatsServer, postgres: PostgresServer
) -> None:
    """A commit while NATS is down waits for it; records appear in commit order."""
    url, store = fresh_urls(own_nats, postgres)

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await engine.create_stream(StreamSpec("s", 1))
            await engine.append("s", [(None, b"0")])
            await asyncio.to_thread(own_nats.stop)
            pending = asyncio.create_task(engine.append("s", [(None, b"1"), (None, b"2")]))
            await asyncio.sleep(0.5)
            assert not pending.done(), "the append waits for its records to be readable"
            await asyncio.to_thread(own_nats.start)
            assert await pending == [(0, 1), (0, 2)]
            assert await read_all(engine, "s") == [[b"0", b"1", b"2"]]
        finally:
            await engine.close()

    run(body())


# -- commits whose outcome is unknown -----------------------------------------------------------


def test_commit_whose_reply_is_lost_applies_once(
    nats: NatsServer, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction commits, then the connection drops before the reply: the engine finds
    its commit id and does not apply the unit again."""
    url, store = fresh_urls(nats, postgres)
    original = PgStore._apply
    calls = []

    async def apply_then_lose_reply(self: PgStore, conn: Any, *args: Any) -> Any:
        calls.append(1)
        positions = await original(self, conn, *args)  # one statement: it is durable now...
        if len(calls) == 1:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("lost")  # ...the reply is not
        return positions

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await engine.create_stream(StreamSpec("s", 1))
            monkeypatch.setattr(PgStore, "_apply", apply_then_lose_reply)
            positions = await engine.commit(
                UnitOfWork(appends=[("s", None, b"x")], writes=[KVWrite("n", "k", b"v")])
            )
            monkeypatch.undo()
            assert positions == [("s", 0, 0)]
            assert len(calls) == 1, "not applied a second time"
            assert await read_all(engine, "s") == [[b"x"]]
            assert (await engine.kv_get("n", ["k"]))["k"][0] == b"v"
        finally:
            await engine.close()

    run(body())


def test_commit_killed_before_commit_is_retried(
    nats: NatsServer, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends the session mid-transaction: nothing applied, the retry applies it.

    Another session holds the partition's counter row, so the unit's transaction stops at its
    last step (the inbox row inserted, the outbox not yet): it is killed there."""
    url, store = fresh_urls(nats, postgres)
    original = PgStore._apply
    calls = []

    async def apply_then_die(self: PgStore, conn: Any, *args: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            return await original(self, conn, *args)
        pid = conn.get_server_pid()
        schema = store.rsplit("schema=", 1)[1]
        blocker = await asyncpg.connect(postgres.url)
        try:
            await blocker.execute("BEGIN")
            await blocker.execute(
                f"UPDATE {schema}.sp_partitions SET last_pseq = last_pseq WHERE stream = 's'"
            )
            attempt = asyncio.ensure_future(original(self, conn, *args))
            while not attempt.done():  # until it waits for the row, mid-transaction
                waiting = await blocker.fetchval(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
                )
                if waiting == "Lock":
                    await blocker.execute("SELECT pg_terminate_backend($1)", pid)
                    break
                await asyncio.sleep(0.01)
            return await attempt
        finally:
            await blocker.close()

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await engine.create_stream(StreamSpec("s", 1))
            monkeypatch.setattr(PgStore, "_apply", apply_then_die)
            positions = await engine.commit(
                UnitOfWork(appends=[("s", None, b"x")], inbox=[("c", "event-1")])
            )
            monkeypatch.undo()
            assert positions == [("s", 0, 0)]
            assert len(calls) == 2
            assert await read_all(engine, "s") == [[b"x"]]
            assert await engine.inbox_seen("c", ["event-1"]) == {"event-1"}
        finally:
            await engine.close()

    run(body())


# -- two instances, one group -------------------------------------------------------------------


def test_two_instances_share_a_group(nats: NatsServer, postgres: PostgresServer) -> None:
    url, store = fresh_urls(nats, postgres)
    total = 200

    async def member(engine: Engine, name: str, stop: asyncio.Event, seen: set[int]) -> None:
        while not stop.is_set():
            assignment = await engine.heartbeat("g", "in", name, session_timeout=5)
            seen.update(assignment.partitions)
            await process(engine, "g", assignment.partitions)
            await engine.wait(["in"], 0.05)

    async def body() -> None:
        one = await open_engine(url, store)
        two = await open_engine(url, store)
        try:
            await one.create_stream(StreamSpec("in", 4))
            await one.create_stream(StreamSpec("out", 2))
            a = await one.heartbeat("g", "in", "a", session_timeout=5)
            b = await two.heartbeat("g", "in", "b", session_timeout=5)
            a = await one.heartbeat("g", "in", "a", session_timeout=5)
            assert a.members == b.members == ("a", "b")
            assert set(a.partitions) | set(b.partitions) == {0, 1, 2, 3}
            assert not set(a.partitions) & set(b.partitions)

            stop = asyncio.Event()
            seen_a: set[int] = set()
            seen_b: set[int] = set()
            tasks = [
                asyncio.create_task(member(one, "a", stop, seen_a)),
                asyncio.create_task(member(two, "b", stop, seen_b)),
            ]
            for i in range(0, total, 10):  # producers on both instances
                await (one if i % 20 else two).append("in", [keyed(j) for j in range(i, i + 10)])
            deadline = time.monotonic() + 30
            while sum((await one.committed("g", "in")).values()) < total:
                assert time.monotonic() < deadline, "the group did not catch up"
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
            assert seen_a == set(a.partitions) and seen_b == set(b.partitions)
            await check_exactly_once(one, total)

            # b leaves: a owns everything at once and carries on from b's committed offsets.
            await two.leave("g", "in", "b")
            assert (await one.heartbeat("g", "in", "a", session_timeout=5)).partitions == (
                0,
                1,
                2,
                3,
            )
            await two.append("in", [keyed(j) for j in range(total, total + 20)])
            await drain(one, "g", total + 20, (0, 1, 2, 3))
            await check_exactly_once(one, total + 20)
        finally:
            await one.close()
            await two.close()

    run(body())


def test_wait_wakes_on_another_instances_commit(nats: NatsServer, postgres: PostgresServer) -> None:
    url, store = fresh_urls(nats, postgres)

    async def body() -> None:
        one = await open_engine(url, store)
        two = await open_engine(url, store)
        try:
            await one.create_stream(StreamSpec("s", 1))
            waiter = asyncio.create_task(two.wait(["s"], 10))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await one.append("s", [(None, b"x")])
            await waiter
            assert time.monotonic() - started < 5
            assert [r.value for r in await two.read("s", 0, 0, 10)] == [b"x"]
        finally:
            await one.close()
            await two.close()

    run(body())


# -- names, URLs, layout ------------------------------------------------------------------------


def test_stream_names_map_one_to_one_onto_jetstream(
    nats: NatsServer, postgres: PostgresServer
) -> None:
    url, store = fresh_urls(nats, postgres)
    names = ["orders", "orders.v1", "orders_v1", "orders-v1", "ünïcode stream", "a/b", "_2E"]
    assert len({encode_name(n) for n in names}) == len(names)

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            for i, name in enumerate(names):
                await engine.create_stream(StreamSpec(name, 2))
                await engine.append(name, [(f"key {i} ü\n", f"{name}".encode())])
            for name in names:
                records = [r for p in range(2) for r in await engine.read(name, p, 0, 10)]
                assert [r.value for r in records] == [name.encode()]
                assert records[0].key is not None and records[0].key.endswith(" ü\n")
        finally:
            await engine.close()

    run(body())


def test_one_schema_belongs_to_one_prefix(nats: NatsServer, postgres: PostgresServer) -> None:
    url, store = fresh_urls(nats, postgres)

    async def body() -> None:
        engine = await open_engine(url, store)
        await engine.close()
        with pytest.raises(ConfigError, match="belongs to NATS prefix"):
            await open_engine(url.replace("prefix=", "prefix=other"), store)

    run(body())


@pytest.mark.parametrize(
    ("url", "store", "message"),
    [
        ("nats://127.0.0.1:1?prefix=a.b", "postgresql://x/y", "prefix must match"),
        ("nats://127.0.0.1:1?colour=red", "postgresql://x/y", "unknown options"),
        ("nats://127.0.0.1:1", "mysql://x/y", "postgresql://"),
        ("nats://127.0.0.1:1", "postgresql://x/y?schema=Bad-Name", "schema must match"),
    ],
)
def test_bad_urls(url: str, store: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        asyncio.run(_open_engine(url, store=store))


def test_retention_becomes_max_age(nats: NatsServer, postgres: PostgresServer) -> None:
    url, store = fresh_urls(nats, postgres)

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await engine.create_stream(StreamSpec("s", 1, retention=3600))
            info = await engine._log._jsm.stream_info(engine._log.js_name("s", 0))
            assert info.config.max_age == 3600
            assert info.config.deny_delete, "no deletes from the middle: offsets stay dense"
            await engine.create_stream(StreamSpec("s", 1, retention=60))
            info = await engine._log._jsm.stream_info(engine._log.js_name("s", 0))
            assert info.config.max_age == 60
            assert (await engine.streams())[0].retention == 60
        finally:
            await engine.close()

    run(body())


def test_a_stream_placed_while_a_peer_is_offline_waits_for_it(
    nats: NatsServer, postgres: PostgresServer
) -> None:
    """JetStream refuses to place a replicated stream while a node it needs is offline or not
    yet heard from (err 10005, "peer offline": a cluster starting, a node restarting, a new
    meta leader). Creating a stream then waits for the node within the engine's timeout, and
    says which stream and why when the node stays away. Other refusals are not waited on."""
    url, store = fresh_urls(nats, postgres)

    def refusal(reason: str) -> nats_errors.BadRequestError:
        return nats_errors.BadRequestError(
            code=400, err_code=10005, description=f"no suitable peers for placement, {reason}")

    async def body() -> None:
        engine = await _open_engine(f"{url}&timeout=1", store=store)
        assert isinstance(engine, NatsEngine)
        jsm = engine._log._jsm
        real_add = jsm.add_stream
        refusals: list[str] = []

        def refusing(*reasons: str, forever: bool = False) -> Callable[..., Awaitable[Any]]:
            left = list(reasons)

            async def add_stream(config: Any, **kwargs: Any) -> Any:
                if left:
                    refusals.append(config.name)
                    raise refusal(left[0] if forever else left.pop(0))
                return await real_add(config, **kwargs)

            return add_stream

        try:
            jsm.add_stream = refusing("peer offline", "peer offline")  # type: ignore[method-assign]
            await engine.create_stream(StreamSpec("s", 1))
            assert len(refusals) == 2
            await engine.commit(UnitOfWork(appends=[("s", "k", b"v")]))
            assert [r.value for r in await engine.read("s", 0, 0, 10)] == [b"v"]

            jsm.add_stream = refusing("peer offline", forever=True)  # type: ignore[method-assign]
            with pytest.raises(PeersOffline) as offline:
                await engine.create_stream(StreamSpec("t", 2))
            message = str(offline.value)
            assert "stream 't' partition" in message and "offline" in message, message
            assert "still so after 1 s" in message, message
            assert await engine.streams() == [StreamSpec("s", 1)], "nothing half-made is kept"

            refusals.clear()
            jsm.add_stream = refusing("insufficient resources", forever=True)  # type: ignore[method-assign]
            with pytest.raises(ConfigError, match="insufficient resources"):
                await engine.create_stream(StreamSpec("u", 1))
            assert len(refusals) == 1, "a refusal that will not pass is not waited on"
        finally:
            await engine.close()

    run(body())


def test_replicas_are_planned_and_applied_on_a_cluster(
    nats_cluster: NatsCluster, postgres: PostgresServer
) -> None:
    """A stream made with one replica drifts from a URL asking for three; creating it again
    (what `setpiece apply` does) moves it to three replicas, one on each node."""
    url, store = fresh_urls(nats_cluster, postgres)
    single = url.replace("replicas=3", "replicas=1")

    async def body() -> None:
        engine = await open_engine(single, store)
        try:
            await engine.create_stream(StreamSpec("s", 2))
            await engine.commit(UnitOfWork(appends=[("s", "k", b"v")]))
        finally:
            await engine.close()
        engine = await open_engine(url, store)
        try:
            spec = StreamSpec("s", 2)
            drift = await engine.drift(spec)
            assert len(drift) == 2 and "has 1 replica(s), the engine URL asks for 3" in drift[0]
            await engine.create_stream(spec)
            assert await engine.drift(spec) == []
            name = engine._log.js_name("s", 0)
            info = await engine._log._jsm.stream_info(name)
            assert info.config.num_replicas == 3
            for _ in range(200):  # the new peers report in as they catch up
                info = await engine._log._jsm.stream_info(name)
                if info.cluster is not None and len(info.cluster.replicas or []) == 2:
                    break
                await asyncio.sleep(0.05)
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
            kept = [r.value for p in (0, 1) for r in await engine.read("s", p, 0, 10)]
            assert kept == [b"v"], "the record written with one replica is still there"
        finally:
            await engine.close()

    run(body())


def test_the_cluster_serves_on_when_a_node_dies(
    nats_cluster: NatsCluster, postgres: PostgresServer
) -> None:
    """Commits and reads go on while one of three nodes is down (SIGKILL), and the node
    catches up when it comes back."""
    url, store = fresh_urls(nats_cluster, postgres)
    node = nats_cluster.nodes[0]

    async def body() -> None:
        engine = await open_engine(url, store)
        try:
            await engine.create_stream(StreamSpec("s", 1))
            await engine.commit(UnitOfWork(appends=[("s", "k", b"before")]))
            node.kill()
            try:
                for n in range(20):
                    await engine.commit(UnitOfWork(appends=[("s", "k", f"down-{n}".encode())]))
                records = await engine.read("s", 0, 0, 100)
                assert [r.value for r in records] == [
                    b"before", *(f"down-{n}".encode() for n in range(20))]
            finally:
                await asyncio.to_thread(node.start)
            await engine.commit(UnitOfWork(appends=[("s", "k", b"after")]))
            assert (await engine.end_offsets("s")) == [22]
        finally:
            await engine.close()

    run(body())


def test_a_replica_that_lags_is_read_past_from_the_leader(
    nats_cluster: NatsCluster, postgres: PostgresServer
) -> None:
    """A direct get may be answered by a replica still catching up: it says "the end" short of
    the leader's end. The read then takes the rest from the leader (STREAM.MSG.GET), keys,
    values and times as a direct get gives them: at once when the reader knows the partition
    goes further, otherwise at most a second later (not one STREAM.INFO per read)."""
    url, store = fresh_urls(nats_cluster, postgres)

    async def body() -> None:
        engine = await open_engine(url, store)
        assert isinstance(engine, NatsEngine)
        try:
            await engine.create_stream(StreamSpec("s", 1))
            await engine.commit(UnitOfWork(appends=[
                ("s", key, f"v{n}".encode())
                for n, key in enumerate(["k", "schlüssel", None, " spaced ", "k"])
            ]))
            log = engine._log
            truth = await engine.read("s", 0, 0, 10)
            assert [r.value for r in truth] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
            real_get = log._replies.get

            async def lagging(js_name: str, request: dict[str, Any]) -> tuple[list[Any], bool]:
                msgs, _ = await real_get(js_name, request)
                return msgs[:1], True  # a replica two records behind: "that is the end"

            log._replies.get = lagging  # type: ignore[method-assign]
            found, at_end = await log.read("s", 0, 0, 10, known_end=5)
            assert at_end
            assert [(r.offset, r.key, r.value) for r in found] == [
                (r.offset, r.key, r.value) for r in truth]
            assert [round(r.timestamp, 3) for r in found] == [
                round(r.timestamp, 3) for r in truth]
            # Another reader, behind, knowing nothing of the records past the replica's end:
            # the end the leader gave a moment ago (to the first reader) is known, so the rest
            # comes from the leader at once.
            found, _ = await log.read("s", 0, 3, 10, known_end=0)
            assert [r.value for r in found] == [b"v3", b"v4"]
            # With nothing known past the replica's end, it is believed for up to a second
            # after the leader was asked, then the leader is asked again.
            log._leader_said[("s", 0)] = (time.monotonic(), 3)  # the leader said 3, just now
            found, _ = await log.read("s", 0, 3, 10, known_end=0)
            assert [r.value for r in found] == [b"v3"]
            log._leader_said[("s", 0)] = (time.monotonic() - 1.5, 3)  # (as a second later)
            found, _ = await log.read("s", 0, 3, 10, known_end=0)
            assert [r.value for r in found] == [b"v3", b"v4"]
            # A reader that knows the partition goes further asks the leader at once.
            found, _ = await log.read("s", 0, 3, 10, known_end=5)
            assert [r.value for r in found] == [b"v3", b"v4"]

            async def empty(js_name: str, request: dict[str, Any]) -> tuple[list[Any], bool]:
                return [], False  # an empty batch that does not even say it is the end

            log._replies.get = empty  # type: ignore[method-assign]
            found, _ = await log.read("s", 0, 2, 10, known_end=3)
            assert [r.value for r in found] == [b"v2", b"v3", b"v4"]
        finally:
            await engine.close()

    run(body())


# -- the servers ----------------------------------------------------------------------------------


def test_servers_keep_data_across_restarts() -> None:
    with nats_server() as nats, postgres_server() as pg:
        url, store = fresh_urls(nats, pg)

        async def write() -> None:
            engine = await open_engine(url, store)
            await engine.create_stream(StreamSpec("s", 1))
            await engine.commit(
                UnitOfWork(appends=[("s", "k", b"v")], writes=[KVWrite("n", "k", b"v")])
            )
            await engine.close()

        async def check() -> None:
            engine = await open_engine(url, store)
            assert [r.value for r in await engine.read("s", 0, 0, 10)] == [b"v"]
            assert (await engine.kv_get("n", ["k"]))["k"][0] == b"v"
            await engine.close()

        asyncio.run(write())
        port = (nats.port, pg.port)
        nats.restart()
        pg.restart()
        assert (nats.port, pg.port) == port
        asyncio.run(check())
        data = (nats.store_dir, pg.base_dir)
    assert not data[0].exists() and not data[1].exists(), "temporary directories removed"


def test_unreachable_nats_is_an_engine_error(postgres: PostgresServer) -> None:
    async def body() -> None:
        started = time.monotonic()
        with pytest.raises(EngineError, match=r"NATS at .* is unreachable"):
            await _open_engine("nats://127.0.0.1:1?timeout=0.5", store=postgres.url)
        assert time.monotonic() - started < 5

    run(body())
