"""The outbox relay: moves committed records from PostgreSQL into JetStream, in order, once.

A committing process relays its own records right after its transaction commits, so
``commit`` returns when they are readable. A background loop in every engine relays rows that
stayed behind (their committer crashed, or NATS was down), once they are a little old.

One relayer at a time per partition (a transaction-scoped advisory lock in PostgreSQL). It
publishes the partition's pending rows oldest first, pipelined, each with
``Nats-Expected-Last-Sequence`` = its sequence - 1 and ``Nats-Msg-Id``, then deletes them in the
same transaction that holds the lock. A relayer that dies between publishing and deleting leaves
rows that the next relayer publishes again; JetStream refuses them (wrong last sequence: they are
there already) and the relayer deletes them. So the log never holds a record twice, however long
the gap (the dedup window is a second line of defence, not the first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from setpiece.engine.nats.log import TRANSIENT_ERRORS, JetStreamLog
from setpiece.engine.postgres.store import CONNECTION_ERRORS, PgStore
from setpiece.engine.retry import Backoff
from setpiece.errors import EngineError

__all__ = ["Relay"]

_log = logging.getLogger("setpiece.engine.nats")

_BATCH = 1000  # rows per publish round
_PUBLISH_TIMEOUT = 5.0  # seconds to wait for one round's acks
_ORPHAN_AGE = 2.0  # seconds before the background loop takes over a committer's rows
_INTERVAL = 1.0  # seconds between background passes
_COMMIT_MEMORY = 3600.0  # seconds commit ids are kept (for commits whose reply was lost)

RETRYABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, *CONNECTION_ERRORS)


class _Incomplete(Exception):
    """A round stored only part of its rows; the rest go in the next round."""


_RETRY: tuple[type[BaseException], ...] = (*RETRYABLE, _Incomplete)
_BACKGROUND_RETRY: tuple[type[BaseException], ...] = (*_RETRY, EngineError)


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

    async def flush(
        self, stream: str, partition: int, upto: int, values: dict[int, bytes] | None = None
    ) -> None:
        """Return once every outbox row of the partition up to ``upto`` is in the log, and
        every other engine can know it (the wake-up reached the server).

        ``values`` are the committer's own rows (pseq -> value), which it need not read back.
        """
        backoff = Backoff(self._retry_for)
        stored = 0
        while True:
            try:
                if not stored:
                    # Every row up to ``upto`` is in the log once the pass returns, published
                    # by this pass or by another relayer (whose wake-up may still be on its
                    # way: send one too).
                    stored = max(
                        upto, await self._pass(stream, partition, upto, values or {}, wait=True)
                    )
                await self._wake(stream, partition, stored)
                return
            except _RETRY as exc:
                if not await backoff.pause():
                    raise EngineError(
                        f"committed, but not yet relayed to JetStream ({exc!r}); the records "
                        "will appear once NATS is reachable"
                    ) from exc

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
