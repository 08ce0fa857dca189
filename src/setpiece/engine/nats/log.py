"""Partitioned logs on NATS JetStream: one JetStream stream per setpiece partition.

A setpiece stream ``orders`` with 4 partitions under prefix ``sp`` is held by JetStream streams
``sp-orders-0`` .. ``sp-orders-3``, each with one subject (``sp.orders.0`` ..). JetStream numbers
a stream's messages densely from 1, so a partition's offset is its JetStream sequence minus one;
nothing ever deletes a message from the middle (the streams deny deletes), and retention
(``max_age``) and ``trim`` (purge up to a sequence) only move the start.

Every record is published by the outbox relay (:mod:`setpiece.engine.nats.relay`) with
``Nats-Expected-Last-Sequence`` set to its own sequence minus one, so a record lands at exactly the
offset PostgreSQL assigned it, or not at all: lost, duplicated or reordered publishes (a relayer
crashing, a reconnect resending its buffer, two relayers racing) are refused by the server.

Names, headers, timestamps, publish acks and wake-ups as they travel: :mod:`.wire`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from setpiece.engine._records import records
from setpiece.engine.contract import Record
from setpiece.engine.nats import client
from setpiece.engine.nats.client import READ_TIMEOUT, Replies, Reply, fast_headers
from setpiece.engine.nats.wire import (
    Ack,
    encode_name,
    header_block,
    key_headers,
    parse_timestamp,
    wake_payload,
)
from setpiece.engine.postgres.outbox import OutboxRow
from setpiece.errors import ConfigError, EngineError

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NATS
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the production engine needs nats-py: pip install 'setpiece[nats,postgres]'"
    ) from exc

__all__ = ["TRANSIENT_ERRORS", "JetStreamLog", "PeersOffline"]


class PeersOffline(EngineError):
    """JetStream cannot place a replicated stream now: a node it needs is offline, or not yet
    heard from (a cluster starting, a node restarting, a meta leader newly elected). It passes
    once the node reports in, so the engine retries it within its timeout."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

_decode_json = msgspec.json.Decoder().decode
_WRONG_LAST_SEQUENCE = 10071
_NO_PEERS_FOR_PLACEMENT = 10005  # the reasons follow in the description
_EXISTS_OTHERWISE = 10058  # a stream of that name exists with another configuration
_DUPLICATE_WINDOW = 120.0  # seconds; never more than a stream's max_age
# Seconds a replica's "that is the end" is believed without asking the leader, unless the
# reader knows the partition goes further (see JetStreamLog.read).
_LEADER_RECHECK = 1.0


class JetStreamLog:
    """The JetStream half of the production engine."""

    def __init__(self, nc: NATS, prefix: str, *, replicas: int = 1) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._jsm = nc.jsm()
        self.prefix = prefix
        self._replicas = replicas
        self._replies = Replies(nc)
        # per partition: when the leader was last asked, and the end it gave (a lower bound of
        # the end from then on, whoever reads)
        self._leader_said: dict[tuple[str, int], tuple[float, int]] = {}
        self._next_sync: asyncio.Future[None] | None = None
        self._sync_task: asyncio.Future[None] | None = None
        fast_headers(nc)

    @property
    def reconnects(self) -> int:
        """How often the connection was re-established (core messages may have been lost)."""
        return int(self._nc.stats.get("reconnects", 0))

    async def sync(self) -> None:
        """One round trip to the server (PING/PONG), shared by concurrent callers.

        When it returns, every message the server routed to this connection before this call
        began has been received and handed to its subscription (the server answers a PING in
        order with what it queued for us). A caller joins a round trip only if its PING has not
        been sent yet, so the guarantee holds for every caller.
        """
        future = self._next_sync
        if future is None:
            future = self._next_sync = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._send_sync, future)
        await asyncio.shield(future)
        await asyncio.sleep(0)  # let the subscription task run the callbacks queued before PONG

    def _send_sync(self, future: asyncio.Future[None]) -> None:
        self._next_sync = None  # later callers need a later PING

        async def run() -> None:
            try:
                await self._nc.flush(timeout=int(READ_TIMEOUT))
            except BaseException as exc:
                if not future.done():
                    future.set_exception(
                        nats.errors.TimeoutError() if isinstance(exc, Exception) else exc
                    )
                    future.exception()  # mark retrieved; joiners re-raise it
                return
            if not future.done():
                future.set_result(None)

        self._sync_task = asyncio.ensure_future(run())

    # -- names ------------------------------------------------------------------------------

    def js_name(self, stream: str, partition: int) -> str:
        return f"{self.prefix}-{encode_name(stream)}-{partition}"

    def subject(self, stream: str, partition: int) -> str:
        return f"{self.prefix}.{encode_name(stream)}.{partition}"

    def wake_subject(self, stream: str) -> str:
        return f"{self.prefix}._wake.{encode_name(stream)}"

    @property
    def wake_wildcard(self) -> str:
        return f"{self.prefix}._wake.>"

    # -- streams ----------------------------------------------------------------------------

    async def ensure(self, stream: str, partitions: int, retention: float | None) -> None:
        """Create (or reconfigure) the JetStream streams of every partition."""
        await asyncio.gather(*(self._ensure_one(stream, p, retention) for p in range(partitions)))

    async def _ensure_one(self, stream: str, partition: int, retention: float | None) -> None:
        config = StreamConfig(
            name=self.js_name(stream, partition),
            subjects=[self.subject(stream, partition)],
            storage=StorageType.FILE,
            num_replicas=self._replicas,
            discard=DiscardPolicy.OLD,
            max_age=retention or 0.0,
            duplicate_window=min(_DUPLICATE_WINDOW, retention or _DUPLICATE_WINDOW),
            allow_direct=True,
            deny_delete=True,
            description=f"setpiece stream {stream!r} partition {partition}",
        )
        try:
            try:
                await self._jsm.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _EXISTS_OTHERWISE:
                    raise
                await self._jsm.update_stream(config)
        except nats.js.errors.BadRequestError as exc:
            where = f"stream {stream!r} partition {partition}"
            if exc.err_code == _NO_PEERS_FOR_PLACEMENT and "offline" in (exc.description or ""):
                raise PeersOffline(
                    f"{where}: JetStream cannot place {self._replicas} replica(s) while a node "
                    f"is offline ({exc.description})"
                ) from exc
            raise ConfigError(f"{where}: JetStream refused it: {exc}") from exc

    async def delete(self, stream: str, partitions: int) -> None:
        """Delete the JetStream streams of every partition (missing ones are fine)."""

        async def one(partition: int) -> None:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._jsm.delete_stream(self.js_name(stream, partition))

        await asyncio.gather(*(one(p) for p in range(partitions)))
        for partition in range(partitions):
            self._leader_said.pop((stream, partition), None)

    async def drift(self, stream: str, partitions: int, retention: float | None) -> list[str]:
        """How the JetStream streams of a stream differ from its declaration (empty: none)."""
        out: list[str] = []
        for partition in range(partitions):
            name = self.js_name(stream, partition)
            try:
                info = await self._jsm.stream_info(name)
            except nats.js.errors.NotFoundError:
                out.append(f"JetStream stream {name} is missing")
                continue
            max_age = info.config.max_age or 0.0
            if abs(max_age - (retention or 0.0)) > 1e-3:
                out.append(f"JetStream stream {name} has max_age {max_age:g}s")
            replicas = info.config.num_replicas or 1
            if replicas != self._replicas:
                out.append(f"JetStream stream {name} has {replicas} replica(s), "
                           f"the engine URL asks for {self._replicas}")
        return out

    async def _stream_state(self, name: str) -> dict[str, Any]:
        """A JetStream stream's ``state`` (STREAM.INFO, decoded no further than that)."""
        reply = await self._replies.request(f"$JS.API.STREAM.INFO.{name}", b"", READ_TIMEOUT)
        if reply.status == "503":
            raise nats.errors.NoRespondersError
        try:
            body = _decode_json(reply.data)
            error = body.get("error")
            state = body["state"] if error is None else None
        except (ValueError, KeyError, AttributeError, TypeError):  # a status or odd reply
            raise nats.errors.TimeoutError from None  # (transient: the caller retries)
        if error is not None:
            nats.js.errors.APIError.from_error(error)  # raises
        assert isinstance(state, dict)
        return state

    async def state(self, stream: str, partitions: int) -> list[tuple[int, int]]:
        """(first offset held, next offset) per partition."""
        states = await asyncio.gather(
            *(self._stream_state(self.js_name(stream, p)) for p in range(partitions))
        )
        out = []
        for state in states:
            first, last = int(state["first_seq"]), int(state["last_seq"])
            out.append((max(first - 1, 0) if state.get("messages") else last, last))
        return out

    async def last_seq(self, stream: str, partition: int) -> int:
        state = await self._stream_state(self.js_name(stream, partition))
        return int(state["last_seq"])

    # -- reading ----------------------------------------------------------------------------

    async def read(
        self, stream: str, partition: int, offset: int, limit: int, known_end: int = 0
    ) -> tuple[list[Record], bool]:
        """Records from ``offset`` on, and whether they reach the end of the partition.

        On a replicated stream any replica may answer, one still catching up too (after its
        node restarted), which answers "the end" (or an empty batch) short of the leader's end.
        Such an answer is checked against the leader, and what the replica lacks is read from
        the leader, when the partition is known to go further (``known_end``, a lower bound of
        its end: what the caller has seen appended; or the end the leader last gave, for any
        reader) or when the leader was last asked about this partition ``_LEADER_RECHECK``
        seconds ago or more. So a caught-up reader costs the leader one STREAM.INFO a second
        per partition, not one per read, and a lagging replica delays a reader that knows
        nothing newer by at most that long.
        """
        if limit <= 0:
            return [], False
        msgs, at_end = await self._replies.get(
            self.js_name(stream, partition), {"seq": max(offset, 0) + 1, "batch": limit}
        )
        rows = []
        for msg in msgs:
            sequence, stamp = msg.header("Nats-Sequence"), msg.header("Nats-Time-Stamp")
            if sequence is None or stamp is None:
                raise EngineError(f"{self.js_name(stream, partition)}: a record without headers")
            key = msg.header("Sp-Key")
            if key is None:
                encoded = msg.header("Sp-Key64")
                key = None if encoded is None else base64.b64decode(encoded).decode()
            rows.append((int(sequence) - 1, key, msg.data, parse_timestamp(stamp)))
        if (at_end or not rows) and self._replicas > 1 and len(rows) < limit:
            reached = rows[-1][0] + 1 if rows else offset
            which, now = (stream, partition), time.monotonic()
            asked, said = self._leader_said.get(which, (-_LEADER_RECHECK, 0))
            if reached >= max(known_end, said) and now - asked < _LEADER_RECHECK:
                return records(stream, partition, rows), at_end
            state = await self._stream_state(self.js_name(stream, partition))
            first, end = int(state["first_seq"]) - 1, int(state["last_seq"])
            self._leader_said[which] = (now, end)
            following = rows[-1][0] + 1 if rows else max(offset, first)  # (trimmed: held on)
            if end > following:
                rows += await self._read_from_leader(
                    stream, partition, following, min(limit - len(rows), end - following)
                )
                at_end = (rows[-1][0] + 1 if rows else following) >= end
        return records(stream, partition, rows), at_end

    async def _read_from_leader(
        self, stream: str, partition: int, offset: int, count: int
    ) -> list[tuple[int, str | None, bytes, float]]:
        """``count`` records from ``offset`` by STREAM.MSG.GET, which the stream's leader
        answers (slower than a direct get: one request per record)."""
        name = self.js_name(stream, partition)

        async def one(seq: int) -> tuple[int, str | None, bytes, float]:
            reply = await self._replies.request(
                f"$JS.API.STREAM.MSG.GET.{name}", msgspec.json.encode({"seq": seq}), READ_TIMEOUT
            )
            if reply.status == "503":
                raise nats.errors.NoRespondersError
            body = _decode_json(reply.data)
            if body.get("error") is not None:
                nats.js.errors.APIError.from_error(body["error"])  # raises
            message = body["message"]
            headers = header_block(base64.b64decode(message.get("hdrs") or b""))
            key = headers.get("Sp-Key")
            if key is None and "Sp-Key64" in headers:
                key = base64.b64decode(headers["Sp-Key64"]).decode()
            data = base64.b64decode(message.get("data") or b"")
            return int(message["seq"]) - 1, key, data, parse_timestamp(message["time"])

        return list(await asyncio.gather(*(one(offset + 1 + i) for i in range(count))))

    async def first_at(self, stream: str, partition: int, timestamp: float) -> int | None:
        """The offset of the first record stored at or after ``timestamp``, if any."""
        when = datetime.fromtimestamp(timestamp, UTC).isoformat()
        msgs, _ = await self._replies.get(
            self.js_name(stream, partition), {"start_time": when, "batch": 1}
        )
        sequence = msgs[0].header("Nats-Sequence") if msgs else None
        return None if sequence is None else int(sequence) - 1

    async def purge_before(self, stream: str, partition: int, offset: int | None) -> None:
        """Drop records before ``offset`` (every record when None)."""
        name = self.js_name(stream, partition)
        if offset is None:
            await self._jsm.purge_stream(name)
        elif offset > 0:
            await self._jsm.purge_stream(name, seq=offset + 1)

    # -- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        stream: str,
        partition: int,
        rows: Sequence[OutboxRow],
        values: dict[int, bytes],
        ack_wait: float,
    ) -> int:
        """Publish outbox rows (in pseq order) at their sequences; returns the highest
        sequence now known stored (at least ``rows[0].pseq - 1``)."""
        subject = self.subject(stream, partition)
        prefix = await self._replies.prefix()
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()
        acks: list[Ack | None] = [None] * len(rows)
        missing = len(rows)

        def on_ack(msg: Reply) -> None:  # one handler for the whole batch
            nonlocal missing
            index = int(msg.subject.rpartition("-")[2])
            if acks[index] is None:
                acks[index] = Ack.parse(msg)
                missing -= 1
                if missing == 0 and not answered.done():
                    answered.set_result(None)

        token = self._replies.expect(on_ack)
        try:
            await self._send(subject, f"{prefix}{token}-", rows, values)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answered), ack_wait)
        finally:
            self._replies.forget(token)
            answered.cancel()  # no-op once answered
        stored = rows[0].pseq - 1
        for row, ack in zip(rows, acks, strict=True):
            if ack is None or ack.error:
                break
            if ack.seq != row.pseq:  # pragma: no cover - invariant
                raise EngineError(
                    f"{self.js_name(stream, partition)}: record stored at sequence "
                    f"{ack.seq}, outbox says {row.pseq}"
                )
            stored = row.pseq
        else:
            return stored
        # Refused (wrong last sequence: stored already, or an earlier one was lost) or
        # unanswered: the stream's last sequence says how far it got.
        last = await self.last_seq(stream, partition)
        if last < rows[0].pseq - 1:
            raise EngineError(
                f"JetStream stream {self.js_name(stream, partition)} ends at sequence {last} "
                f"but the outbox continues at {rows[0].pseq}: the stream lost records "
                "(deleted or recreated?); restore it before relaying"
            )
        return max(stored, min(last, rows[-1].pseq))

    async def _send(
        self, subject: str, reply: str, rows: Sequence[OutboxRow], values: dict[int, bytes]
    ) -> None:
        """Publish rows (reply subject ``reply`` + index), each with its expected last sequence
        and message id. Connected, the whole batch is written as one buffer of HPUB commands
        (what nats-py's ``publish`` writes per message, without its per-call work); while
        reconnecting, or if this nats-py lacks that seam, message by message."""
        nc = self._nc
        send = client.seam(nc, "_send_command")
        flush = client.seam(nc, "_flush_pending")
        limit = client.seam(nc, "_max_payload") or 0
        if send is None or flush is None or not nc.is_connected:
            for index, row in enumerate(rows):
                value = row.value if row.value is not None else values[row.pseq]
                headers = {
                    "Nats-Msg-Id": row.msg_id,
                    "Nats-Expected-Last-Sequence": str(row.pseq - 1),
                    **key_headers(row.key),
                }
                await nc.publish(subject, value, reply=f"{reply}{index}", headers=headers)
            return
        head = f"HPUB {subject} {reply}".encode()
        parts: list[bytes] = []
        for index, row in enumerate(rows):
            value = row.value if row.value is not None else values[row.pseq]
            if len(value) > limit:
                raise nats.errors.MaxPayloadError
            key = row.key
            if key is None:
                key_line = b""
            elif key.isascii() and key.isprintable() and key == key.strip() and key:
                key_line = b"Sp-Key: " + key.encode() + b"\r\n"
            else:
                key_line = b"Sp-Key64: " + base64.b64encode(key.encode()) + b"\r\n"
            hdr = b"NATS/1.0\r\nNats-Msg-Id: %s\r\nNats-Expected-Last-Sequence: %d\r\n%s\r\n" % (
                row.msg_id.encode(), row.pseq - 1, key_line
            )
            parts.append(b"%s%d %d %d\r\n" % (head, index, len(hdr), len(hdr) + len(value)))
            parts.append(hdr)
            parts.append(value)
            parts.append(b"\r\n")
        await send(b"".join(parts))
        queue = client.seam(nc, "_flush_queue")
        if queue is not None and queue.empty():
            await flush()

    async def wake(self, stream: str, partition: int, end: int) -> None:
        """Tell every engine that ``stream[partition]`` holds records up to offset ``end``."""
        await self._nc.publish(self.wake_subject(stream), wake_payload(stream, partition, end))
