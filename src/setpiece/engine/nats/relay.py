"""The outbox relay: moves committed records from PostgreSQL into JetStream, in order, once.

Every record is published with ``Nats-Expected-Last-Sequence`` = its sequence - 1 (and a
``Nats-Msg-Id``), so JetStream stores it at the sequence PostgreSQL assigned it or not at all:
whoever publishes, however often, in whatever order, the log never holds a record twice or out
of order. Deleting a published row is therefore only housekeeping.

A committing process relays its own records right after its transaction commits, so
``commit`` returns when they are readable. It does so through one *lane* per partition: the
lane holds the rows this process committed (with their values, so nothing is read back),
knows up to which sequence JetStream holds the partition, and one task per lane publishes the
next contiguous rows, pipelined, whoever committed them. Rows before its own that this process
does not hold (another process committed them, or their relayer died) are read from the outbox
first. Published rows are deleted in the background, many partitions per statement.

A background loop in every engine relays rows that stayed behind (their committer crashed, or
NATS was down), once they are a little old: one relayer at a time per partition (a
transaction-scoped advisory lock in PostgreSQL), publishing and deleting in that transaction.
A relayer that dies between publishing and deleting leaves rows that the next relayer publishes
again; JetStream refuses them (wrong last sequence: they are there already) and the relayer
deletes them. So the log never holds a record twice, however long the gap (the dedup window is
a second line of defence, not the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from setpiece.engine.nats.log import TRANSIENT_ERRORS, JetStreamLog
from setpiece.engine.postgres.connection import CONNECTION_ERRORS
from setpiece.engine.postgres.outbox import OutboxRow
from setpiece.engine.postgres.store import PgStore
from setpiece.errors import EngineError

__all__ = ["Relay"]

_log = logging.getLogger("setpiece.engine.nats")

_BATCH = 1000  # rows per publish round
_PUBLISH_TIMEOUT = 5.0  # seconds to wait for one round's acks
_ORPHAN_AGE = 2.0  # seconds before the background loop takes over a committer's rows
_INTERVAL = 1.0  # seconds between background passes
_COMMIT_MEMORY = 3600.0  # seconds commit ids are kept (for commits whose reply was lost)
_GAP_WAIT = 0.05  # seconds a lane waits for this process's commits in flight to fill a gap

RETRYABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, *CONNECTION_ERRORS)


class _Incomplete(Exception):
    """A round stored only part of its rows; the rest go in the next round."""


_RETRY: tuple[type[BaseException], ...] = (*RETRYABLE, _Incomplete)
_BACKGROUND_RETRY: tuple[type[BaseException], ...] = (*_RETRY, EngineError)


class _Waiter:
    __slots__ = ("deadline", "future", "upto")

    def __init__(self, upto: int, deadline: float, future: asyncio.Future[None]) -> None:
        self.upto = upto
        self.deadline = deadline
        self.future = future


class _Lane:
    """One partition, as this process relays it. See the module docstring."""

    __slots__ = ("changed", "inflight", "known", "partition", "published", "rows", "stream",
                 "task", "waiters")

    def __init__(self, stream: str, partition: int) -> None:
        self.stream = stream
        self.partition = partition
        self.rows: dict[int, OutboxRow] = {}  # committed here, not yet known to be stored
        self.published = 0  # JetStream holds the partition up to here (a lower bound)
        self.known = False  # published was read from JetStream (or an ack) since the last reset
        self.waiters: list[_Waiter] = []
        self.inflight = 0  # this process's commits appending here, awaiting PostgreSQL
        self.changed = asyncio.Event()  # one of them ended
        self.task: asyncio.Task[None] | None = None


class Relay:
    def __init__(
        self,
        store: PgStore,
        log: JetStreamLog,
        *,
        retry_for: float,
        on_published: Callable[[str, int, int], None],
    ) -> None:
        self._store = store
        self._log = log
        self._retry_for = retry_for
        self._on_published = on_published
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._deletes: dict[tuple[str, int], int] = {}  # relayed rows to delete, up to
        self._deleter: asyncio.Task[None] | None = None
        self._closed = False

    # -- the committer's own records ----------------------------------------------------------

    def lanes(self, partitions: Iterable[tuple[str, int]]) -> list[_Lane]:
        """The lanes of the partitions a commit appends to, marked as having it in flight
        (call :meth:`committed` once it ends, whatever the outcome)."""
        out = []
        for key in partitions:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(*key)
            lane.inflight += 1
            out.append(lane)
        return out

    def committed(
        self, lanes: list[_Lane], rows: dict[tuple[str, int], list[OutboxRow]] | None
    ) -> list[asyncio.Future[None]]:
        """A commit ended: ``rows`` per partition if it committed (None if not). Returns one
        future per partition that is done once JetStream holds those rows and every other
        engine can know it (the wake-up reached the server), or fails with EngineError after
        ``retry_for`` seconds of NATS being unreachable (the rows stay in the outbox)."""
        futures = []
        loop = asyncio.get_running_loop()
        for lane in lanes:
            lane.inflight -= 1
            lane.changed.set()
            mine = rows.get((lane.stream, lane.partition)) if rows else None
            if not mine:
                continue
            if self._closed:
                closed: asyncio.Future[None] = loop.create_future()
                closed.set_exception(EngineError("engine is closed"))
                futures.append(closed)
                continue
            for row in mine:
                lane.rows[row.pseq] = row
            future: asyncio.Future[None] = loop.create_future()
            lane.waiters.append(
                _Waiter(mine[-1].pseq, time.monotonic() + self._retry_for, future)
            )
            futures.append(future)
            if lane.task is None:
                lane.task = loop.create_task(
                    self._pump(lane), name=f"setpiece-relay-{lane.stream}-{lane.partition}"
                )
        return futures

    async def _pump(self, lane: _Lane) -> None:
        """Publish the lane's rows until nobody waits. Every waiter is settled here: stored,
        failed after its deadline, or failed when the engine closes."""
        delay = 0.02
        try:
            while True:
                lane.waiters = [w for w in lane.waiters if not w.future.done()]
                if not lane.waiters:
                    return
                try:
                    await self._round(lane)
                    delay = 0.02
                except _RETRY as exc:
                    lane.known = False  # where JetStream is may have moved without us
                    now = time.monotonic()
                    for waiter in lane.waiters:
                        if waiter.deadline < now + delay and not waiter.future.done():
                            waiter.future.set_exception(
                                EngineError(
                                    f"committed, but not yet relayed to JetStream ({exc!r}); "
                                    "the records will appear once NATS is reachable"
                                )
                            )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                except Exception as exc:  # e.g. the stream lost records: tell every waiter
                    lane.known = False
                    error = exc if isinstance(exc, EngineError) else EngineError(
                        f"committed, but relaying to JetStream failed ({exc!r}); the records "
                        "will appear once the background relay publishes them"
                    )
                    for waiter in lane.waiters:
                        if not waiter.future.done():
                            waiter.future.set_exception(error)
        except BaseException:
            for waiter in lane.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(EngineError("engine is closed"))
            raise
        finally:
            lane.task = None
            if not lane.waiters:  # the rows left (callers gone) are in the outbox
                lane.rows.clear()

    async def _round(self, lane: _Lane) -> None:
        """One step: publish the next rows (ours, or the outbox's before ours), then settle
        the waiters JetStream now covers."""
        stream, partition = lane.stream, lane.partition
        if not lane.known:
            lane.published = max(lane.published, await self._log.last_seq(stream, partition))
            lane.known = True
        target = max(w.upto for w in lane.waiters)
        if lane.published < target:
            following = lane.published + 1
            batch: list[OutboxRow] = []
            if following in lane.rows:
                row = lane.rows.get(following)
                while row is not None and len(batch) < _BATCH:
                    batch.append(row)
                    row = lane.rows.get(row.pseq + 1)
            else:
                if lane.inflight:  # a commit of ours may hold the rows before: give it a moment
                    lane.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.changed.wait(), _GAP_WAIT)
                    if following in lane.rows:
                        return
                ours = [q for q in lane.rows if q > following]
                batch = await self._store.outbox_rows(
                    stream, partition, following, min(ours) - 1 if ours else target, _BATCH
                )
                if not batch or batch[0].pseq != following:  # published by someone else
                    last = await self._log.last_seq(stream, partition)
                    if last < following:
                        raise EngineError(
                            f"JetStream stream {self._log.js_name(stream, partition)} ends at "
                            f"sequence {last} but the outbox has no row {following}: the "
                            "stream lost records (deleted or recreated?); restore it"
                        )
                    lane.published = max(lane.published, last)
                    batch = []
            if batch:
                stored = await self._log.publish(
                    stream, partition, batch, {}, ack_wait=_PUBLISH_TIMEOUT
                )
                lane.published = max(lane.published, stored)
                if stored < batch[-1].pseq:
                    raise _Incomplete(f"{stream}[{partition}] stored up to {stored}")
        published = lane.published
        for pseq in [q for q in lane.rows if q <= published]:
            del lane.rows[pseq]
        if not any(w.upto <= published for w in lane.waiters):
            return
        self._on_published(stream, partition, published)
        self._delete_later(stream, partition, published)
        await self._wake(stream, partition, published)
        for waiter in lane.waiters:
            if waiter.upto <= published and not waiter.future.done():
                waiter.future.set_result(None)

    # -- deleting relayed rows ----------------------------------------------------------------

    def _delete_later(self, stream: str, partition: int, upto: int) -> None:
        key = (stream, partition)
        if upto > self._deletes.get(key, 0):
            self._deletes[key] = upto
        if self._deleter is None and not self._closed:
            self._deleter = asyncio.get_running_loop().create_task(
                self._delete_rounds(), name="setpiece-outbox-delete"
            )

    async def _delete_rounds(self) -> None:
        """Delete relayed rows, every partition's in one statement per round. A failure only
        leaves rows behind: the next relayer of the partition finds them stored and deletes
        them."""
        try:
            while self._deletes and not self._closed:
                upto, self._deletes = self._deletes, {}
                try:
                    await self._store.delete_relayed(upto)
                except _BACKGROUND_RETRY as exc:
                    _log.debug("outbox delete: %r; retrying", exc)
                    for key, q in upto.items():
                        self._deletes[key] = max(q, self._deletes.get(key, 0))
                    await asyncio.sleep(_INTERVAL)
        finally:
            self._deleter = None

    async def close(self) -> None:
        """Stop every task: waiters fail with EngineError; rows not deleted stay (harmless)."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if self._deleter is not None:
            tasks.append(self._deleter)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _wake(self, stream: str, partition: int, stored: int) -> None:
        """Publish the wake-up for records stored up to sequence ``stored`` and make sure the
        server has it: readers in other processes rely on it (see ``NatsEngine.read``)."""
        await self._log.wake(stream, partition, stored)
        await self._log.sync()

    async def _pass(
        self, stream: str, partition: int, upto: int, values: dict[int, bytes], *, wait: bool
    ) -> int:
        """One locked pass over a partition's outbox; returns the highest sequence it stored
        (-1: it stored nothing, or another relayer holds the partition)."""
        stored_max = -1
        skip = (min(values), max(values)) if values else None
        try:
            async with self._store.relay_session(stream, partition, wait=wait) as session:
                if session is None:
                    return -1
                while True:
                    rows = await session.pending(_BATCH, skip)
                    if not rows or rows[0].pseq > upto:
                        return stored_max
                    stored = await self._log.publish(
                        stream, partition, rows, values, ack_wait=_PUBLISH_TIMEOUT
                    )
                    if stored >= rows[0].pseq:
                        stored_max = stored
                        await session.delete(stored)
                    if stored < rows[-1].pseq:
                        raise _Incomplete(f"{stream}[{partition}] stored up to {stored}")
        finally:
            if stored_max > 0:
                self._on_published(stream, partition, stored_max)

    async def run(self, closing: asyncio.Event) -> None:
        """Relay rows left behind, until ``closing`` is set."""
        last_cleanup = 0.0
        while not closing.is_set():
            try:
                await asyncio.wait_for(closing.wait(), _INTERVAL)
                return
            except TimeoutError:
                pass
            try:
                for stream, partition in await self._store.outbox_partitions(
                    time.time() - _ORPHAN_AGE
                ):
                    stored = await self._pass(stream, partition, 2**62, {}, wait=False)
                    if stored > 0:
                        await self._wake(stream, partition, stored)
                if time.monotonic() - last_cleanup > 60:
                    await self._store.forget_commits(time.time() - _COMMIT_MEMORY)
                    last_cleanup = time.monotonic()
            except _BACKGROUND_RETRY as exc:
                _log.debug("outbox relay: %r; retrying", exc)
            except Exception:  # pragma: no cover - keep relaying whatever went wrong
                _log.exception("outbox relay failed; retrying")
