"""A consumer: one consumer group on one stream, delivering records to one action.

Every handler and every rule target is a consumer. Its loop:

1. heartbeat the group now and then, and take the partitions it is assigned;
2. read a batch from each owned partition, from the last committed offset;
3. keep the records it accepts (the rule's pattern, a redrive or replay aimed elsewhere is not
   ours), drop the ids its inbox has seen;
4. run the deliveries — different partition keys concurrently, one key in order — each with its
   retry policy; a delivery that keeps failing becomes a dead letter;
5. commit everything the batch did in one unit of work, moving the offset by compare-and-set.

A lost race (another member committed first, or a read key changed) commits nothing: the batch is
read again from the committed offset, so effects happen once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from setpiece.clock import SYSTEM_CLOCK, Clock
from setpiece.engine.contract import Engine, OffsetCommit, Record, UnitOfWork
from setpiece.errors import ConflictError, EngineError, EventError, RefusedError, SchemaError
from setpiece.event import Event
from setpiece.patterns import Pattern
from setpiece.policy import RetryPolicy
from setpiece.runtime.config import RuntimeConfig
from setpiece.runtime.reader import Entry, StreamReader
from setpiece.runtime.timeouts import Deadline
from setpiece.runtime.unit import Attempt, Batch
from setpiece.service import InputDecodeError
from setpiece.signals import Drop, Retry

__all__ = ["DEAD_LETTERS", "Consumer", "Delivery", "inbox_key"]

DEAD_LETTERS = "setpiece.deadletters"
TARGET_MARK = "sptarget"  # extension: a redrive aimed at one consumer group
REPLAY_MARK = "spreplay"  # extension: the name of the replay that re-sent this event
RULE_MARK = "sprule"  # extension: a replay aimed at one rule

log = logging.getLogger("setpiece.runtime")
# Between restarts of a consumer's loop while the engine stays unreachable: 0.4 s doubling to
# 5 s (only the delays: the loop keeps trying until the consumer stops).
_RECONNECT = RetryPolicy(initial_delay=0.4, max_delay=5.0, jitter=0)

Action = Callable[[Event, Attempt, int], Awaitable[None]]


_PLAIN_KEY_MAX = 240  # characters of a readable inbox key; longer ones are digested


def inbox_key(event: Event, replay: str | None) -> str:
    """The inbox's key for an event: what CloudEvents says is unique (``source`` + ``id``),
    scoped by tenant, and by replay (a replay's events are delivered once more).

    Readable while short and plain (``id␟source[␟tenant][␞replay]``, with U+001F and U+001E
    as separators and printable ASCII inside); otherwise a digest of the parts
    (``␝`` + 40 hex digits). Two different events never share a key, and every key can be
    stored and indexed by every engine (PostgreSQL refuses U+0000 and index rows over 2 KiB).
    Keys recorded by earlier versions held the id alone: never matched, they age out after
    ``RuntimeConfig.inbox_retention``.
    """
    id_, source, tenant = event.id, event.source, event.tenant
    if tenant is None and replay is None:  # the common case, in the fewest steps
        if len(id_) + len(source) <= _PLAIN_KEY_MAX:
            whole = id_ + source
            if whole.isascii() and whole.isprintable():  # no control character: no separator
                return f"{id_}\x1f{source}"
    else:
        whole = f"{id_}{source}{tenant or ''}{replay or ''}"
        if len(whole) <= _PLAIN_KEY_MAX and whole.isascii() and whole.isprintable():
            key = f"{id_}\x1f{source}" if tenant is None else f"{id_}\x1f{source}\x1f{tenant}"
            return key if replay is None else f"{key}\x1e{replay}"
    parts = repr((id_, source, tenant, replay)).encode("utf-8", "surrogatepass")
    return "\x1d" + hashlib.blake2b(parts, digest_size=20).hexdigest()


class Delivery(msgspec.Struct):
    """One accepted record on its way to the action."""

    record: Record
    event: Event
    inbox_key: str


class Consumer:
    """One consumer group on one stream. See the module docstring for its loop."""

    def __init__(
        self,
        *,
        engine: Engine,
        config: RuntimeConfig,
        group: str,
        stream: str,
        label: str,
        action: Action,
        retry: RetryPolicy,
        concurrency: int,
        reader: StreamReader,
        accept: Pattern | None = None,
        rule: str | None = None,
        start_at_end: bool = False,
        on_commit: Callable[[], None] = lambda: None,
        deadline: Deadline | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.engine = engine
        self.clock = clock  # retries' backoff waits on it (a VirtualClock in tests)
        self.config = config
        self.group = group
        self.stream = stream
        self.label = label
        self.action = action
        self.retry = retry
        self.concurrency = concurrency
        self.accept = accept
        self.reader = reader
        reader.follow(group, accept)
        self.rule = rule
        self.start_at_end = start_at_end
        self._on_commit = on_commit
        self.deadline = deadline  # the handler's time limit per attempt
        self.positions: dict[int, int] = {}
        self.owned: tuple[int, ...] = ()
        self.busy = False
        #: waiting on the clock for a retry's backoff (settled, for a VirtualClock's advance)
        self.parked = False
        self._stopping = False
        self._stopped = asyncio.Event()  # wakes a retry's backoff when the consumer stops
        self._task: asyncio.Task[None] | None = None
        self._next_heartbeat = 0.0
        self._narrow: dict[int, int] = {}  # partition -> offset to read one record at a time to

    # -- lifecycle --------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Create the group's offsets on first use: at the end for bus rules (new events only)."""
        if (self.group, self.stream) in set(await self.engine.groups()):
            return
        ends = await self.engine.end_offsets(self.stream) if self.start_at_end else None
        partitions = len(await self.engine.end_offsets(self.stream))
        unit = UnitOfWork(
            offsets=[
                OffsetCommit(self.group, self.stream, p, 0, ends[p] if ends else 0)
                for p in range(partitions)
            ]
        )
        with contextlib.suppress(ConflictError):  # another process created the group first
            await self.engine.commit(unit)

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        failures = 0
        self.busy = False  # a restart (see Runtime._supervise): take the partitions afresh
        self.owned = ()
        self._next_heartbeat = 0.0
        self._narrow.clear()
        try:
            while not self._stopping:
                try:
                    await self._step()
                    failures = 0
                except EngineError as exc:
                    # The engine stayed unreachable past its own retries (a server restarting
                    # for long), or a commit's outcome is unknown: keep the consumer alive, and
                    # start again from the committed offsets once it answers (the inbox and the
                    # offsets' compare-and-set keep effects exactly once).
                    if self._stopping or self.engine_closed():
                        raise
                    failures += 1
                    log.warning("%s: %s; retrying from the committed offsets", self.label, exc)
                    self.busy = False
                    self.owned = ()
                    self._next_heartbeat = 0.0
                    await asyncio.sleep(_RECONNECT.delay(failures))
        finally:
            if not self.engine_closed():
                with contextlib.suppress(EngineError, asyncio.CancelledError):
                    await asyncio.shield(
                        self.engine.leave(self.group, self.stream, self.config.member)
                    )

    async def _step(self) -> None:
        await self._maybe_heartbeat()
        progressed = False
        for partition in self.owned:
            if self._stopping:
                break
            progressed |= await self._turn(partition)
        if not progressed and not self._stopping:
            timeout = max(0.0, self._next_heartbeat - time.monotonic())
            await self.engine.wait([self.stream], timeout)

    def engine_closed(self) -> bool:
        return bool(getattr(self.engine, "_closed", False))

    async def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.config.heartbeat_interval
        assignment = await self.engine.heartbeat(
            self.group, self.stream, self.config.member,
            session_timeout=self.config.session_timeout,
        )
        if assignment.partitions != self.owned:
            committed = await self.engine.committed(self.group, self.stream)
            self.owned = assignment.partitions
            self.positions = {p: committed[p] for p in self.owned}

    # -- one batch --------------------------------------------------------------------------

    async def _turn(self, partition: int) -> bool:
        start = self.positions[partition]
        narrow = self._narrow.get(partition)
        if narrow is not None and start >= narrow:
            del self._narrow[partition]
            narrow = None
        limit = 1 if narrow is not None else self.config.batch_size
        entries = await self.reader.read(partition, start, limit)
        if not entries:
            return False
        self.busy = True
        try:
            end = entries[-1].record.offset + 1
            batch = Batch(self.engine)
            deliveries = await self._accepted(entries, batch)
            if deliveries:
                await self._run_deliveries(deliveries, batch)
            batch.offsets.append(OffsetCommit(self.group, self.stream, partition, start, end))
            try:
                try:
                    await self.engine.commit(batch.unit())
                except RefusedError as exc:
                    if len(entries) > 1:
                        # One record's effects hold what the engine cannot store: take the
                        # batch again one record per commit, to dead-letter that one alone.
                        log.info("%s: %s; committing %s[%d]@%d..%d one record at a time",
                                 self.label, exc, self.stream, partition, start, end - 1)
                        self._narrow[partition] = end
                        return True
                    await self._commit_refused(entries[0], start, exc)
            except ConflictError as exc:
                log.debug("%s: %s; reading again from the committed offset", self.label, exc)
                committed = await self.engine.committed(self.group, self.stream)
                self.positions[partition] = committed[partition]
                self._next_heartbeat = 0.0  # ownership may have moved
                return True
            self.positions[partition] = end
            self._on_commit()
            return True
        finally:
            self.busy = False

    async def _commit_refused(self, entry: Entry, start: int, exc: RefusedError) -> None:
        """Commit a dead letter for the one record whose effects the engine refused, with the
        offset past it and nothing else it did (a restart then never reads it again)."""
        try:
            event: Event | None = entry.event()
        except Exception:  # refused before it was an event (an inbox key, ...)
            event = None
        record = entry.record
        batch = Batch(self.engine)
        self._dead_letter(batch, record, event, exc, 1)
        batch.offsets.append(
            OffsetCommit(self.group, self.stream, record.partition, start, record.offset + 1)
        )
        await self.engine.commit(batch.unit())

    async def _accepted(self, entries: list[Entry], batch: Batch) -> list[Delivery]:
        candidates: list[Delivery] = []
        group = self.group
        filtered = self.accept is not None
        for entry in entries:
            if entry.error is not None:
                # Not a readable event (appended by something else?): dead-letter it as it is.
                self._dead_letter(batch, entry.record, None, entry.error, 0)
                continue
            if filtered:
                if entry.match_error is not None:  # our pattern cannot tell: not silently lost
                    self._dead_letter(batch, entry.record, None, entry.match_error, 0)
                    continue
                if group not in entry.matched:
                    continue
            try:
                delivery = self._candidate(entry)
            except Exception as exc:  # whatever the record holds: a dead letter, and go on
                self._dead_letter(batch, entry.record, None, exc, 0)
                continue
            if delivery is not None:
                candidates.append(delivery)
        if not candidates:
            return []
        seen = await self.engine.inbox_seen(group, [d.inbox_key for d in candidates])
        out: list[Delivery] = []
        for delivery in candidates:
            if delivery.inbox_key in seen:
                continue
            seen.add(delivery.inbox_key)  # the same event twice in one batch: once
            out.append(delivery)
        return out

    def _candidate(self, entry: Entry) -> Delivery | None:
        """The delivery of an accepted entry; None when it is aimed at another consumer."""
        extensions = entry.raw.get("extensions")
        replay = None
        if extensions and type(extensions) is dict:  # not an object: refused by entry.event()
            target = extensions.get(TARGET_MARK)
            rule = extensions.get(RULE_MARK)
            replay = extensions.get(REPLAY_MARK)
            for name, mark in ((TARGET_MARK, target), (RULE_MARK, rule), (REPLAY_MARK, replay)):
                if mark is not None and type(mark) is not str:
                    raise EventError(f"extensions.{name}: must be a string", field=name)
            if target is not None and target != self.group:
                return None
            if rule is not None and rule != self.rule:
                return None
        event = entry.event()
        if extensions and (TARGET_MARK in extensions or RULE_MARK in extensions):
            rest = {k: v for k, v in extensions.items() if k not in (TARGET_MARK, RULE_MARK)}
            event = event.replace(extensions=rest or None)
        return Delivery(entry.record, event, inbox_key(event, replay))

    async def _run_deliveries(self, deliveries: list[Delivery], batch: Batch) -> None:
        if self.concurrency == 1 or len(deliveries) == 1:
            await self._run_chain(deliveries, batch)
            return
        chains: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            event = delivery.event
            key = event.partitionkey
            if key is None:
                key = "\0" + event.id
            chain = chains.get(key)
            if chain is None:
                chains[key] = [delivery]
            else:
                chain.append(delivery)
        queue = list(chains.values())
        queue.reverse()

        async def worker() -> None:
            task = None if self.deadline is None else asyncio.current_task()  # once per worker
            while queue:
                await self._run_chain(queue.pop(), batch, task)

        workers = min(self.concurrency, len(queue))
        if workers == 1:
            await worker()
        else:
            await asyncio.gather(*(worker() for _ in range(workers)))

    async def _run_chain(
        self, deliveries: list[Delivery], batch: Batch, task: asyncio.Task[Any] | None = None
    ) -> None:
        """Deliver in order. The first attempt runs here; only a failure or an in-batch
        conflict goes through :func:`deliver`'s retry loop. ``task``: the one running this."""
        group = self.group
        deadline = self.deadline
        if deadline is not None and task is None:
            task = asyncio.current_task()
        for delivery in deliveries:
            attempt = Attempt(batch)
            failed: Exception | None = None
            try:
                if deadline is None or task is None:  # read each time: the CLI wraps it
                    await self.action(delivery.event, attempt, 1)
                else:
                    await deadline.run(task, self.action, delivery.event, attempt, 1)
            except Exception as exc:
                failed = exc
            if failed is not None:  # retried outside the except block: no chained tracebacks
                await self._deliver(delivery, batch, failed)
                failed = None
            elif not attempt.merge((group, delivery.inbox_key)):
                await self._deliver(delivery, batch, None)  # lost a race: run again as the 1st

    async def _deliver(
        self, delivery: Delivery, batch: Batch, failed: Exception | None = None
    ) -> None:
        await deliver(
            self.action,
            delivery.event,
            batch,
            retry=self.retry,
            label=self.label,
            inbox=(self.group, delivery.inbox_key),
            dead=lambda exc, n: self._dead_letter(batch, delivery.record, delivery.event, exc, n),
            failed=failed,
            deadline=self.deadline,
            backoff=self._backoff,
        )

    async def _backoff(self, delay: float) -> None:
        """Wait before a retry; if the consumer stops meanwhile, hand the batch back instead.

        A retry waiting on its backoff is not work in flight: a stop (a worker's SIGTERM, a
        ``setpiece dev`` reload) does not wait it out. The consumer's task is cancelled, as when
        the grace period runs out: nothing of the batch is committed, and whoever owns the
        partition next reads it again from the committed offset.
        """
        if not self._stopping:
            self.parked = True
            try:
                await self.clock.wait(self._stopped, delay)
            finally:
                self.parked = False
        if self._stopping and self._task is not None:
            self._task.cancel()
            await asyncio.sleep(delay)  # the cancellation arrives here

    def _dead_letter(
        self, batch: Batch, record: Record, event: Event | None, exc: BaseException, n: int
    ) -> None:
        batch.appends.append(
            dead_letter_record(
                event, exc, n, label=self.label, group=self.group, record=record
            )
        )

    # -- observation ------------------------------------------------------------------------

    async def lag(self) -> int:
        ends = await self.engine.end_offsets(self.stream)
        committed = await self.engine.committed(self.group, self.stream)
        return sum(max(0, end - committed.get(p, 0)) for p, end in enumerate(ends))


async def deliver(
    action: Action,
    event: Event,
    batch: Batch,
    *,
    retry: RetryPolicy,
    label: str,
    inbox: tuple[str, str] | None,
    dead: Callable[[BaseException, int], None],
    failed: Exception | None = None,
    deadline: Deadline | None = None,
    backoff: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run one delivery to success, a Drop, or a dead letter; merge what succeeded into batch.

    ``failed``: the first attempt already ran (the caller's fast path) and raised this.
    ``deadline``: the time limit of each attempt (HandlerTimeout, a failure, past it).
    ``backoff``: waits between attempts (a consumer's gives the batch back when it stops).
    """
    number = 0
    while True:
        number += 1
        if failed is None:
            attempt = Attempt(batch)
            try:
                if deadline is None:
                    await action(event, attempt, number)
                else:
                    await deadline.run(None, action, event, attempt, number)
            except Exception as first:
                failed = first
            else:
                if attempt.merge(inbox):
                    return
                number -= 1  # lost an in-batch race on a store key: run again, not counted
                continue
        error, failed = failed, None
        try:
            if isinstance(error, Drop):
                if inbox is not None:
                    batch.inbox.append(inbox)
                return
            # retrying will not make the data fit (in, or out: an emitted event off its schema)
            if isinstance(error, InputDecodeError | SchemaError):
                dead(error, number)
                return
            if number >= retry.max_attempts:
                dead(error, number)
                return
            delay = (
                error.delay
                if isinstance(error, Retry) and error.delay is not None
                else retry.delay(number)
            )
            log.info("%s: attempt %d of event %s failed (%s: %s); retrying in %.3fs",
                     label, number, event.id, type(error).__name__, error, delay)
        finally:
            del error  # no cycle through the traceback's frames
        await backoff(delay)


def dead_letter_record(
    event: Event | None,
    exc: BaseException,
    attempts: int,
    *,
    label: str,
    group: str | None,
    record: Record | None,
) -> tuple[str, str | None, bytes]:
    """The dead-letter stream record for a delivery that failed for good."""
    where = f"{record.stream}[{record.partition}]@{record.offset}" if record else label
    log.warning("%s: %s dead-lettered after %d attempt(s): %s: %s",
                label, event.id if event else where, attempts, type(exc).__name__, exc)
    letter = {
        "event": None,
        "raw": record.value.decode("utf-8", "replace") if record and not event else None,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
        "handler": label,
        "group": group,
        "stream": record.stream if record else None,
        "partition": record.partition if record else None,
        "offset": record.offset if record else None,
        "attempts": attempts,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if event is not None:
        try:
            return (DEAD_LETTERS, None, _encode({**letter, "event": event.to_dict()}))
        except Exception:  # an event the encoder cannot write (nested too deep): keep it raw
            letter["raw"] = record.value.decode("utf-8", "replace") if record else None
    return (DEAD_LETTERS, None, _encode(letter))


_encode = msgspec.json.encode
