"""The production engine: logs on NATS JetStream, state in PostgreSQL.

::

    commit(work) ──► PostgreSQL transaction ──────────────► relay ──► JetStream
                     kv versions, offsets (CAS), inbox,      publish at the
                     timers, outbox rows numbered per        sequence PostgreSQL
                     partition in commit order               assigned, then delete

Open it with ``open_engine("nats://host:4222", store="postgresql://user@host/db")``. Options in
the URLs: ``?prefix=sp`` (NATS, names of the JetStream streams and subjects; default ``sp``),
``?replicas=1`` (NATS, JetStream replicas per partition), ``?schema=setpiece`` (PostgreSQL
schema holding the tables; one schema per prefix). See ``docs/engine-production.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from typing import Any

from setpiece.engine.contract import (
    Assignment,
    Engine,
    Record,
    StreamSpec,
    Timer,
    UnitOfWork,
    partition_for,
)
from setpiece.engine.nats.log import TRANSIENT_ERRORS, JetStreamLog, PeersOffline
from setpiece.engine.nats.options import (
    nats_options,
    seed_urls,
)
from setpiece.engine.nats.relay import Relay
from setpiece.engine.nats.wire import parse_wake
from setpiece.engine.postgres.connection import split_store_url
from setpiece.engine.postgres.outbox import OutboxRow
from setpiece.engine.postgres.store import PgStore, Placed
from setpiece.engine.retry import UNREACHABLE
from setpiece.errors import ConfigError, EngineError

try:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the production engine needs nats-py: pip install 'setpiece[nats,postgres]'"
    ) from exc

__all__ = ["NatsEngine", "open_nats"]

_RECHECK = 1.0  # seconds a partition may be answered from the end-offset hints alone


class NatsEngine(Engine):
    """Every rung of the contract on JetStream (logs) and PostgreSQL (everything else)."""

    def __init__(
        self, url: str, nc: NATS, log: JetStreamLog, store: PgStore, *, retry_for: float
    ) -> None:
        self.url = url
        self.store_url = store.url
        self._nc = nc
        self._log = log
        self._store = store
        self._retry_for = retry_for
        self._streams: dict[str, StreamSpec] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._appended = asyncio.Event()
        self._closing = asyncio.Event()
        self._relay = Relay(store, log, retry_for=retry_for, on_published=self._on_published)
        self._background: asyncio.Task[None] | None = None
        # Read hints: a lower bound of each partition's end offset (monotonic: raised by this
        # engine's relay, by wake-ups from every relayer, and by reads), and when a real read
        # last reached the partition's end, on which connection (reconnect count), at which
        # offset.
        self._ends: dict[tuple[str, int], int] = {}
        self._real_read: dict[tuple[str, int], tuple[float, int, int]] = {}

    async def _start(self) -> None:
        await self._nc.subscribe(self._log.wake_wildcard, cb=self._on_wake)
        await self._nc.flush()
        self._background = asyncio.create_task(
            self._relay.run(self._closing), name="setpiece-outbox-relay"
        )

    @property
    def _closed(self) -> bool:
        """Closed (or closing): what the runtime checks before retrying a failed call."""
        return self._closing.is_set()

    # -- plumbing ---------------------------------------------------------------------------

    async def _nats(self, make: Any) -> Any:
        """Run a JetStream call, retrying transient failures until the timeout: reconnects, and
        a replicated stream JetStream cannot place while a node is offline."""
        backoff = UNREACHABLE.backoff(self._retry_for)
        while True:
            if self._closing.is_set():
                raise EngineError("engine is closed")
            try:
                return await make()
            except PeersOffline as exc:
                if not await backoff.pause():
                    raise PeersOffline(f"{exc}; still so after {self._retry_for:g} s") from exc
            except TRANSIENT_ERRORS as exc:
                if not await backoff.pause():
                    raise EngineError(f"NATS unreachable: {exc!r}") from exc

    async def _stream(self, name: str) -> StreamSpec:
        spec = self._streams.get(name)
        if spec is None:
            found = await self._store.stream(name)
            if found is None:
                raise ConfigError(f"stream {name!r} does not exist")
            spec = self._streams[name] = found
        return spec

    async def _partition(self, name: str, partition: int) -> None:
        spec = await self._stream(name)
        if not 0 <= partition < spec.partitions:
            raise ConfigError(f"stream {name!r} has no partition {partition}")

    def _raise_end(self, stream: str, partition: int, end: int) -> None:
        key = (stream, partition)
        if end > self._ends.get(key, 0):
            self._ends[key] = end

    def _on_published(self, stream: str, partition: int, end: int) -> None:
        self._raise_end(stream, partition, end)
        self._appended.set()
        self._appended = asyncio.Event()

    async def _on_wake(self, msg: Msg) -> None:
        wake = parse_wake(msg.data)
        if wake is None:  # a wake-up naming no partition: trust no hint until a real read
            self._real_read.clear()
            self._appended.set()
            self._appended = asyncio.Event()
        else:
            self._on_published(*wake)

    # -- streams ----------------------------------------------------------------------------

    async def create_stream(self, spec: StreamSpec) -> None:
        if spec.partitions < 1:
            raise ConfigError(f"stream {spec.name!r}: partitions must be at least 1")
        existing = await self._store.stream(spec.name)
        if existing is not None and existing.partitions != spec.partitions:
            raise ConfigError(
                f"stream {spec.name!r} exists with {existing.partitions} partitions, "
                f"declared with {spec.partitions}"
            )
        # JetStream first: a stream PostgreSQL knows always has its JetStream streams.
        try:
            await self._nats(lambda: self._log.ensure(spec.name, spec.partitions, spec.retention))
            await self._store.declare_stream(spec)
        except BaseException:
            if existing is None:  # refused part way: remove the JetStream streams made
                with contextlib.suppress(Exception):  # (unless another process made it meanwhile)
                    if await self._store.stream(spec.name) is None:
                        await self._nats(lambda: self._log.delete(spec.name, spec.partitions))
            raise
        self._streams[spec.name] = spec

    async def streams(self) -> list[StreamSpec]:
        return await self._store.streams()

    async def drop_stream(self, name: str) -> None:
        """Delete a stream: its JetStream streams, then what PostgreSQL knows of it (offsets,
        members, pending outbox rows). A stream PostgreSQL does not know has no JetStream
        streams either (:meth:`create_stream` removes them when it fails)."""
        spec = await self._store.stream(name)
        if spec is None:
            return
        await self._nats(lambda: self._log.delete(name, spec.partitions))
        await self._store.drop_stream(name)
        self._streams.pop(name, None)
        self._forget_hints(name)
        self._round_robin.pop(name, None)

    async def drop_group(self, group: str, stream: str) -> None:
        """Forget a consumer group's committed offsets and members on a stream."""
        await self._store.drop_group(group, stream)

    def _forget_hints(self, stream: str) -> None:
        for hints in (self._ends, self._real_read):
            for key in [k for k in hints if k[0] == stream]:
                del hints[key]

    async def drift(self, spec: StreamSpec) -> list[str]:
        """How JetStream differs from a stream PostgreSQL records (``setpiece plan``)."""
        found: list[str] = await self._nats(
            lambda: self._log.drift(spec.name, spec.partitions, spec.retention)
        )
        return found

    async def append(
        self, stream: str, records: Sequence[tuple[str | None, bytes]]
    ) -> list[tuple[int, int]]:
        if not records:
            return []
        positions = await self.commit(UnitOfWork(appends=[(stream, k, v) for k, v in records]))
        return [(p, o) for _, p, o in positions]

    async def read(self, stream: str, partition: int, offset: int, limit: int) -> list[Record]:
        """A batched direct get, unless the hints show the partition has nothing at ``offset``.

        Every relayer publishes a wake-up naming the partition and its new end, and makes sure
        the server has it before its ``commit`` returns; one PING/PONG (``sync``, shared by
        concurrent reads) therefore delivers every wake-up of every commit that returned before
        this read began. If none of them reaches ``offset``, there is nothing to read. Hints
        only ever rise, so they can send a read to the server in vain, never skip a record. A
        wake-up can still be lost (a relayer dying after publishing; this connection
        reconnecting): after a reconnect, and at least every ``_RECHECK`` seconds, the
        partition is read for real, which bounds the delay such a loss can cause. A read is
        only ever skipped after a real read that reached the partition's end (the server says
        so: ``Nats-Num-Pending`` 0, or nothing found), and only at or past the offset that
        read reached: a read at the end (a consumer caught up) says nothing of the records
        before it, which a consumer behind on the same partition still has to read.
        """
        await self._partition(stream, partition)
        key = (stream, partition)
        if offset >= self._ends.get(key, 0) and limit > 0:
            checked = self._real_read.get(key)
            reconnects = self._log.reconnects
            if (
                checked is not None
                and offset >= checked[2]
                and checked[1] == reconnects
                and time.monotonic() - checked[0] < _RECHECK
            ):
                await self._nats(self._log.sync)
                if (
                    offset >= self._ends.get(key, 0)
                    and self._real_read.get(key) == checked
                    and self._log.reconnects == reconnects
                ):
                    return []
        started = time.monotonic(), self._log.reconnects
        records: list[Record]
        known_end = self._ends.get(key, 0)
        records, at_end = await self._nats(
            lambda: self._log.read(stream, partition, offset, limit, known_end)
        )
        reached = offset
        if records:
            reached = records[-1].offset + 1
            self._raise_end(stream, partition, reached)
        if at_end:  # the partition ended at ``reached`` (or before) when the server answered
            self._real_read[key] = (*started, reached)
        else:
            self._real_read.pop(key, None)
        return records

    async def _state(self, stream: str) -> list[tuple[int, int]]:
        spec = await self._stream(stream)
        state: list[tuple[int, int]] = await self._nats(
            lambda: self._log.state(stream, spec.partitions)
        )
        return state

    async def end_offsets(self, stream: str) -> list[int]:
        """Where the next record goes, per partition. Records committed in PostgreSQL but not
        yet relayed to JetStream (their committer died before relaying them, or NATS was
        unreachable) count: a consumer's lag, and so a drain, include them; they are readable
        once the background relay publishes them."""
        spec = await self._stream(stream)
        state, committed = await asyncio.gather(
            self._state(stream), self._store.committed_ends(stream, spec.partitions)
        )
        return [max(end, last) for (_, end), last in zip(state, committed, strict=True)]

    async def start_offsets(self, stream: str) -> list[int]:
        return [start for start, _ in await self._state(stream)]

    async def offsets_for_time(self, stream: str, timestamp: float) -> list[int]:
        spec = await self._stream(stream)
        state = await self._state(stream)
        found = await asyncio.gather(
            *(
                self._nats(lambda p=p: self._log.first_at(stream, p, timestamp))
                for p in range(spec.partitions)
            )
        )
        return [end if off is None else off for off, (_, end) in zip(found, state, strict=True)]

    async def trim(self, stream: str, before: float) -> int:
        state = await self._state(stream)
        dropped = 0
        for partition, (start, end) in enumerate(state):
            keep = await self._nats(lambda p=partition: self._log.first_at(stream, p, before))
            new_start = end if keep is None else max(keep, start)
            if new_start > start:
                await self._nats(lambda p=partition, k=keep: self._log.purge_before(stream, p, k))
                dropped += new_start - start
        return dropped

    async def wait(self, streams: Sequence[str], timeout: float) -> None:
        if self._closing.is_set() or timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._appended.wait(), timeout)

    # -- groups -----------------------------------------------------------------------------

    async def heartbeat(
        self, group: str, stream: str, member: str, *, session_timeout: float
    ) -> Assignment:
        spec = await self._stream(stream)
        members = tuple(await self._store.heartbeat(group, stream, member, session_timeout))
        index = members.index(member)
        owned = tuple(p for p in range(spec.partitions) if p % len(members) == index)
        return Assignment(owned, members)

    async def leave(self, group: str, stream: str, member: str) -> None:
        await self._stream(stream)
        await self._store.leave(group, stream, member)

    async def committed(self, group: str, stream: str) -> dict[int, int]:
        spec = await self._stream(stream)
        out = dict.fromkeys(range(spec.partitions), 0)
        out.update(await self._store.committed(group, stream))
        return out

    async def groups(self) -> list[tuple[str, str]]:
        return await self._store.groups()

    # -- store ------------------------------------------------------------------------------

    async def kv_get(self, namespace: str, keys: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        return await self._store.kv_get(namespace, keys)

    async def kv_scan(
        self, namespace: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        return await self._store.kv_scan(namespace, prefix, limit)

    async def inbox_seen(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        return await self._store.inbox_seen(consumer, event_ids)

    async def prune_inbox(self, before: float) -> int:
        return await self._store.prune_inbox(before)

    async def read_events(
        self, namespace: str, id: str, after: int = 0, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        return await self._store.read_events(namespace, id, after, limit)

    async def event_sequences(
        self, namespace: str, after: str = "", limit: int = 1000
    ) -> list[tuple[str, int]]:
        return await self._store.event_sequences(namespace, after, limit)

    async def commit(self, work: UnitOfWork) -> list[tuple[str, int, int]]:
        if work.empty():
            return []
        placed = []
        for stream, key, value in work.appends:
            spec = await self._stream(stream)
            if key is None:
                counter = self._round_robin.setdefault(stream, itertools.count())
                part = next(counter) % spec.partitions
            else:
                part = partition_for(key, spec.partitions)
            placed.append(Placed(stream, part, key, value))
        for oc in work.offsets:
            await self._partition(oc.stream, oc.partition)
        if not placed:
            positions, _ = await self._store.commit(work, placed)
            return positions
        lanes = self._relay.lanes(dict.fromkeys((p.stream, p.partition) for p in placed))
        rows: dict[tuple[str, int], list[OutboxRow]] | None = None
        try:
            positions, commit_id = await self._store.commit(work, placed)
            rows = {}
            for (stream, part, offset), p in zip(positions, placed, strict=True):
                pseq = offset + 1
                rows.setdefault((stream, part), []).append(
                    OutboxRow(pseq, p.key, p.value, f"{commit_id}.{pseq}")
                )
        finally:
            relayed = self._relay.committed(lanes, rows)
        # Return once the records are readable (the relay publishes rows committed before
        # them first, whoever committed those).
        await asyncio.gather(*relayed)
        return positions

    # -- timers -----------------------------------------------------------------------------

    async def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        return await self._store.due_timers(now, limit)

    async def next_timer(self) -> float | None:
        return await self._store.next_timer()

    async def timers(self, namespace: str) -> list[Timer]:
        return await self._store.timers(namespace)

    async def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._appended.set()
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        await self._relay.close()
        with contextlib.suppress(Exception):
            await self._nc.drain()
        if not self._nc.is_closed:
            await self._nc.close()
        await self._store.close()


async def open_nats(url: str, store_url: str) -> NatsEngine:
    """Open the production engine: JetStream at ``url``, PostgreSQL at ``store_url``."""
    options = nats_options(url)
    server, prefix, timeout = options.server, options.prefix, options.timeout
    seeds = seed_urls(server)

    split_store_url(store_url)  # a malformed store URL fails before any connection is made

    async def quiet(_exc: Exception) -> None:
        """Connection errors are expected while the server restarts; calls retry."""

    secure: dict[str, Any] = {}
    if options.creds:
        secure["user_credentials"] = options.creds
    if options.tls_ca:
        import ssl

        secure["tls"] = ssl.create_default_context(cafile=options.tls_ca)
    nc = NATS()
    try:
        # The first connection gets ``connect_timeout`` seconds (attempts are repeated within
        # it, so a process may start while NATS restarts); once connected, nats-py reconnects
        # forever and calls retry up to ``timeout``.
        await asyncio.wait_for(
            nc.connect(
                servers=seeds,  # every seed: the client fails over between them
                dont_randomize=False,
                name="setpiece",
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.1,  # type: ignore[arg-type]  # annotated int; a float works
                connect_timeout=max(1, int(min(options.connect_timeout, 5))),
                error_cb=quiet,
                **secure,
            ),
            options.connect_timeout,
        )
    except Exception as exc:
        await nc.close()
        reason = (f"no connection within {options.connect_timeout:g} s" if
                  isinstance(exc, TimeoutError) else repr(exc))
        raise EngineError(
            f"NATS at {server!r} is unreachable ({reason}; to wait longer, add "
            f"?connect_timeout=SECONDS to the engine URL)"
        ) from exc
    try:
        store = await PgStore.open(store_url, prefix=prefix, retry_for=timeout)
    except BaseException:
        await nc.close()
        raise
    engine = NatsEngine(
        url, nc, JetStreamLog(nc, prefix, replicas=options.replicas), store, retry_for=timeout
    )
    try:
        await engine._start()
    except BaseException:
        await engine.close()
        raise
    return engine
