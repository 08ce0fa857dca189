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

Names: characters other than ``A-Z a-z 0-9`` in a stream name are written ``_XX`` (hex of each
UTF-8 byte), which keeps JetStream names and subject tokens valid and the mapping one to one.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import functools
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from setpiece.engine._records import records
from setpiece.engine.contract import Record
from setpiece.engine.postgres.store import OutboxRow
from setpiece.errors import ConfigError, EngineError

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the production engine needs nats-py: pip install 'setpiece[nats,postgres]'"
    ) from exc

__all__ = ["TRANSIENT_ERRORS", "JetStreamLog", "encode_name"]

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

_NAME_OK = re.compile(r"[A-Za-z0-9]")
_decode_json = msgspec.json.Decoder().decode
_WRONG_LAST_SEQUENCE = 10071
_DUPLICATE_WINDOW = 120.0  # seconds; never more than a stream's max_age
_READ_TIMEOUT = 5.0


def encode_name(name: str) -> str:
    """A stream name as a JetStream name part and subject token (one to one)."""
    return "".join(
        c if _NAME_OK.fullmatch(c) else "".join(f"_{b:02X}" for b in c.encode()) for c in name
    )


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def parse_timestamp(value: str) -> float:
    """``2026-11-22T04:14:51.228189137Z`` (JetStream's RFC 3339, UTC) as epoch seconds."""
    value = value.rstrip("Z")
    base, _, frac = value.partition(".")
    seconds = float(_epoch_seconds(base))
    if frac:
        seconds += int(frac) / 10 ** len(frac)
    return seconds


def _key_headers(key: str | None) -> dict[str, str]:
    if key is None:
        return {}
    if key.isascii() and key.isprintable() and key == key.strip() and key:
        return {"Sp-Key": key}
    return {"Sp-Key64": base64.b64encode(key.encode()).decode()}


class Reply:
    """A reply to one of our requests: what the handlers read of it.

    From the fast path, the headers stay raw bytes until asked for: a record's few headers are
    found in them directly (:meth:`header`), without building a dict per record.
    """

    __slots__ = ("_headers", "data", "raw", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        raw: bytes | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.raw = raw or None
        self._headers = headers

    @property
    def headers(self) -> dict[str, str] | None:
        if self._headers is None and self.raw is not None:
            self._headers = _parse_headers(self.raw)
        return self._headers

    @property
    def status(self) -> str | None:
        """The inline status ("404", "204", ...), None for a plain message."""
        raw = self.raw
        if raw is not None:
            return raw[9:12].decode() if raw[8:9] == b" " else None
        return (self._headers or {}).get("Status")

    def header(self, name: str) -> str | None:
        raw = self.raw
        if raw is None:
            return (self._headers or {}).get(name)
        needle = b"\r\n" + name.encode() + b": "
        start = raw.find(needle)
        if start < 0:
            return None
        start += len(needle)
        return raw[start : raw.find(b"\r\n", start)].decode("utf-8", "replace")


def _parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0[ status[ description]]\r\nKey: Value\r\n..`` as a dict (the status as
    ``Status``, like nats-py)."""
    first, _, rest = raw.partition(b"\r\n")
    out: dict[str, str] = {}
    for line in rest.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    if len(first) > 8:  # an inline status: "NATS/1.0 404 No Messages"
        status, _, description = first[9:].decode("utf-8", "replace").partition(" ")
        if status.isdigit():
            out["Status"] = status
        if description:
            out["Description"] = description
    return out


class _Replies:
    """Replies to our own requests, over one wildcard inbox subscription (no subscription per
    request). A handler takes every reply to its token ("N", or "N-i" for batches).

    nats-py's ``publish_async`` is not used: it leaves the future of a refused publish pending
    forever (its reply handler raises instead of failing the future).
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._handlers: dict[str, Callable[[Reply], None]] = {}
        self._count = 0
        self._lock = asyncio.Lock()

    async def prefix(self) -> str:
        if not self._prefix:
            async with self._lock:
                if not self._prefix:
                    prefix = self._nc.new_inbox() + "."
                    sub = await self._nc.subscribe(prefix + "*", cb=self._route)
                    self._prefix = prefix
                    self._fast_path(_seam(sub, "_id"))
        return self._prefix

    async def _route(self, msg: Msg) -> None:
        """nats-py's way: a Msg through the subscription's queue and task."""
        self._dispatch(msg.subject, Reply(msg.subject, msg.data, None, msg.headers))

    def _dispatch(self, subject: str, reply: Reply) -> None:
        # A token is "N", or "N-i" for the i-th reply of a batch registered as "N".
        token, _, _ = subject[len(self._prefix) :].partition("-")
        handler = self._handlers.get(token)
        if handler is not None:
            handler(reply)

    def _fast_path(self, sid: int | None) -> None:
        """Hand our replies to their handlers as the parser reads them: no Msg, no queue, no
        task switch per reply (a publish ack or a record each). Anything else takes nats-py's
        own path."""
        nc = self._nc
        original = _seam(nc, "_process_msg")
        if sid is None or original is None:  # pragma: no cover - another nats-py
            return

        async def process_msg(
            msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            if msg_sid != sid:
                return await original(msg_sid, subject, reply, data, headers)  # type: ignore[no-any-return]
            name = subject.decode()
            self._dispatch(name, Reply(name, data, headers))
            return None

        nc._process_msg = process_msg  # type: ignore[method-assign,assignment]

    def expect(self, handler: Callable[[Reply], None]) -> str:
        self._count += 1
        token = str(self._count)
        self._handlers[token] = handler
        return token

    def forget(self, token: str) -> None:
        self._handlers.pop(token, None)

    async def request(self, subject: str, payload: bytes, timeout: float) -> Reply:
        """One request, one reply (over the shared inbox: no subscription, no Msg)."""
        prefix = await self.prefix()
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def answer(msg: Reply) -> None:
            if not done.done():
                done.set_result(msg)

        token = self.expect(answer)
        try:
            await self._nc.publish(subject, payload, reply=prefix + token)
            return await asyncio.wait_for(done, timeout)
        finally:
            self.forget(token)

    async def get(self, js_name: str, request: dict[str, Any]) -> tuple[list[Reply], bool]:
        """Every message a direct get returns, up to its end-of-batch (or not-found) status,
        and whether the stream held nothing more when it answered."""
        prefix = await self.prefix()
        done: asyncio.Future[tuple[list[Reply], bool]] = (
            asyncio.get_running_loop().create_future()
        )
        out: list[Reply] = []
        batched = "batch" in request

        def collect(msg: Reply) -> None:  # runs per reply; no task or queue per record
            if done.done():
                return
            status = msg.status
            if status is None:
                out.append(msg)
                if not batched:
                    done.set_result((out, False))
            elif status == "404":  # nothing at or after
                done.set_result((out, True))
            elif status == "204":  # end of batch; nothing pending after it: the end
                done.set_result((out, msg.header("Nats-Num-Pending") == "0"))
            elif status in ("408", "503"):
                done.set_exception(nats.errors.TimeoutError())
            else:
                done.set_exception(
                    EngineError(f"JetStream direct get on {js_name}: status {status}")
                )

        token = self.expect(collect)
        try:
            await self._nc.publish(
                f"$JS.API.DIRECT.GET.{js_name}",
                json.dumps(request).encode(),
                reply=prefix + token,
            )
            return await asyncio.wait_for(done, _READ_TIMEOUT)
        finally:
            self.forget(token)


@dataclass(frozen=True, slots=True)
class _Ack:
    """JetStream's answer to a publish: a sequence, or an error code."""

    seq: int = 0
    error: int = 0
    description: str = ""

    @classmethod
    def parse(cls, msg: Reply) -> _Ack:
        if msg.status == "503":  # no responders: the stream is not (yet) there
            return cls(error=503, description="no responders")
        try:
            body = _decode_json(msg.data)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return cls(error=-1, description=repr(msg.data[:200]))
        if "error" in body:
            err = body["error"]
            return cls(error=int(err.get("err_code", -1)), description=str(err))
        return cls(seq=int(body["seq"]))


class JetStreamLog:
    """The JetStream half of the production engine."""

    def __init__(self, nc: NATS, prefix: str, *, replicas: int = 1) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._jsm = nc.jsm()
        self.prefix = prefix
        self._replicas = replicas
        self._replies = _Replies(nc)
        self._next_sync: asyncio.Future[None] | None = None
        self._sync_task: asyncio.Future[None] | None = None
        _fast_headers(nc)

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
                await self._nc.flush(timeout=int(_READ_TIMEOUT))
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
            await self._jsm.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # exists with a different configuration
                raise ConfigError(f"stream {stream!r}: JetStream refused it: {exc}") from exc
            await self._jsm.update_stream(config)

    async def delete(self, stream: str, partitions: int) -> None:
        """Delete the JetStream streams of every partition (missing ones are fine)."""

        async def one(partition: int) -> None:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._jsm.delete_stream(self.js_name(stream, partition))

        await asyncio.gather(*(one(p) for p in range(partitions)))

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
        return out

    async def _stream_state(self, name: str) -> dict[str, Any]:
        """A JetStream stream's ``state`` (STREAM.INFO, decoded no further than that)."""
        reply = await self._replies.request(f"$JS.API.STREAM.INFO.{name}", b"", _READ_TIMEOUT)
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
        self, stream: str, partition: int, offset: int, limit: int
    ) -> tuple[list[Record], bool]:
        """Records from ``offset`` on, and whether they reach the end of the partition."""
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
        return records(stream, partition, rows), at_end

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
        acks: list[_Ack | None] = [None] * len(rows)
        missing = len(rows)

        def on_ack(msg: Reply) -> None:  # one handler for the whole batch
            nonlocal missing
            index = int(msg.subject.rpartition("-")[2])
            if acks[index] is None:
                acks[index] = _Ack.parse(msg)
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
        send = _seam(nc, "_send_command")
        flush = _seam(nc, "_flush_pending")
        limit = _seam(nc, "_max_payload") or 0
        if send is None or flush is None or not nc.is_connected:
            for index, row in enumerate(rows):
                value = row.value if row.value is not None else values[row.pseq]
                headers = {
                    "Nats-Msg-Id": row.msg_id,
                    "Nats-Expected-Last-Sequence": str(row.pseq - 1),
                    **_key_headers(row.key),
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
        queue = _seam(nc, "_flush_queue")
        if queue is not None and queue.empty():
            await flush()

    async def wake(self, stream: str, partition: int, end: int) -> None:
        """Tell every engine that ``stream[partition]`` holds records up to offset ``end``."""
        payload = f"{partition} {end} ".encode() + stream.encode()
        await self._nc.publish(self.wake_subject(stream), payload)


def parse_wake(data: bytes) -> tuple[str, int, int] | None:
    """(stream, partition, end offset) of a wake-up, None if it names no partition."""
    try:
        part, end, stream = data.split(b" ", 2)
        return stream.decode(), int(part), int(end)
    except ValueError:
        return None


def _seam(obj: Any, name: str) -> Any:
    """A private attribute of nats-py that the engine uses for speed, or None.

    Every such use goes through here and has a fallback on nats-py's public API, so a nats-py
    that renames or drops one is slower, not broken (pyproject bounds nats-py's version; the
    fallbacks are tested by hiding every seam, see tests/engine/test_nats_specific.py).
    """
    return getattr(obj, name, None)


def _fast_headers(nc: NATS) -> None:
    """Parse plain message headers (``NATS/1.0\\r\\nKey: Value\\r\\n..``) without nats-py's
    generic path (a sixth of the CPU of reading records back); status lines and anything
    unusual still go to nats-py's own parser."""
    generic: Callable[[bytes], Awaitable[dict[str, str] | None]] | None = _seam(
        nc, "_process_headers"
    )
    if generic is None:  # another nats-py: its own parser, unchanged
        return

    async def parse(headers: bytes) -> dict[str, str] | None:
        if not headers:
            return None
        if not headers.startswith(b"NATS/1.0\r\n"):  # a status line: nats-py's own parser
            return await generic(headers)
        try:
            lines = bytes(headers[10:]).decode("utf-8", "replace").split("\r\n")
            return dict(line.split(": ", 1) for line in lines if line)
        except ValueError:
            return await generic(headers)

    nc._process_headers = parse  # type: ignore[method-assign]
