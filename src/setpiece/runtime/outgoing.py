"""Events on their way out: filled in, checked, encoded, and appended in groups.

:func:`prepare` fills what a handler left unset from the event it handled (source, causation,
correlation, trace context (``traceparent`` and the ``tracestate`` extension), partition key,
tenant) and refuses what is malformed or too large.
:class:`GroupCommitter` gathers the appends of many concurrent ``publish`` calls into one
transaction (group commit): each caller awaits until its records are durable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from setpiece.engine.contract import Engine, UnitOfWork
from setpiece.errors import EventError, RefusedError
from setpiece.event import MAX_DEPTH, Event, encode_event

__all__ = ["GroupCommitter", "prepare"]


def prepare(event: Event, *, cause: Event | None, service: str | None) -> Event:
    """The event as it will be stored: defaults filled in from its cause and service."""
    if not isinstance(event, Event):
        raise EventError(f"event: expected setpiece.Event, got {type(event).__name__}")
    changes: dict[str, Any] = {}
    if not event.source:
        if service is None:
            raise EventError("source: required attribute is missing", field="source")
        changes["source"] = service
    if cause is not None:
        if event.causationid is None:
            changes["causationid"] = cause.id
        if event.correlationid is None:
            changes["correlationid"] = cause.correlationid or cause.id
        if event.traceparent is None and cause.traceparent is not None:
            changes["traceparent"] = cause.traceparent
            state = cause.extensions.get("tracestate") if cause.extensions else None
            if state is not None and not (event.extensions and "tracestate" in event.extensions):
                changes["extensions"] = {**(event.extensions or {}), "tracestate": state}
        if event.partitionkey is None and cause.partitionkey is not None:
            changes["partitionkey"] = cause.partitionkey
        if event.tenant is None and cause.tenant is not None:
            changes["tenant"] = cause.tenant
    return (event.replace(**changes) if changes else event).validate().check_external(cause)


def encode_checked(event: Event, max_bytes: int) -> bytes:
    try:
        data = encode_event(event)
    except (TypeError, msgspec.EncodeError) as exc:
        raise EventError(
            f"event {event.type!r}: data is not JSON-serialisable ({exc})", field="data"
        ) from None
    except UnicodeEncodeError:  # a lone surrogate: text with no UTF-8 form
        raise EventError(
            f"{_unencodable(event)}: holds text that is not valid Unicode (a lone surrogate)",
            field=_unencodable(event),
        ) from None
    except RecursionError:
        raise EventError(
            f"data: nested deeper than the limit of {MAX_DEPTH} levels", field="data"
        ) from None
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH or b"null" in data:  # else: nothing
        event.check_encoded(data)  # to find (deep nesting, NaN or Infinity), and no call
    if len(data) > max_bytes:
        raise EventError(
            f"event {event.type!r} ({event.id}): {len(data)} bytes encoded, over the limit of "
            f"{max_bytes} bytes",
            field="data",
        )
    return data


def _unencodable(event: Event) -> str:
    """The attribute of ``event`` that JSON cannot encode (the error path only)."""
    for name in event.__struct_fields__:
        try:
            msgspec.json.encode(getattr(event, name))
        except UnicodeEncodeError:
            return name
        except Exception:  # other problems are reported elsewhere
            continue
    return "event"


class GroupCommitter:
    """Appends from many callers, committed together: one transaction per loop turn.

    When the engine refuses the group's unit (:class:`~setpiece.errors.RefusedError`: a value
    it cannot store), each caller's records are committed alone, so only the caller whose
    records hold that value gets the error."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pending: list[tuple[list[tuple[str, str | None, bytes]], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, records: list[tuple[str, str | None, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((records, done))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        await done

    async def idle(self) -> None:
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the other publishers of this turn join
            while self._pending:
                group, self._pending = self._pending, []
                await self._commit(group, alone=len(group) == 1)
        finally:
            self._flusher = None

    async def _commit(
        self,
        group: list[tuple[list[tuple[str, str | None, bytes]], asyncio.Future[None]]],
        *,
        alone: bool,
    ) -> None:
        records = group[0][0] if alone else [r for recs, _ in group for r in recs]
        try:
            await self._engine.commit(UnitOfWork(appends=records))
        except asyncio.CancelledError:
            for _, waiter in group:
                waiter.cancel()
            raise
        except RefusedError as exc:
            if not alone:
                for one in group:
                    await self._commit([one], alone=True)
                return
            _settle(group, exc)
        except Exception as exc:
            _settle(group, exc)
        else:
            _settle(group, None)


def _settle(
    group: list[tuple[list[tuple[str, str | None, bytes]], asyncio.Future[None]]],
    exc: Exception | None,
) -> None:
    for _, waiter in group:
        if waiter.done():
            continue
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
