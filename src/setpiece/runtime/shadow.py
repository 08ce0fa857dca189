"""Shadow versions (see :mod:`setpiece.runtime.rollouts`): what a shadow sees and does, kept
apart from what real consumers read, and compared with the primary's.

* its store is its own namespace (``shadow:svc:<service>[@tenant]``) laid over the primary's: a
  key the shadow has not written reads the primary's committed value; a key it deleted holds a
  tombstone;
* its events go to the stream ``setpiece.shadow.<service>``, each with the stream or bus it was
  meant for;
* :func:`compare` tells whether a shadow's attempt did what the primary's did (store writes by
  tenant and key, emitted events without ids or times).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from setpiece.context import ServiceStore, check_key, store_namespace
from setpiece.event import Event
from setpiece.runtime.outgoing import encode_checked, prepare
from setpiece.runtime.stores import StoreReader
from setpiece.runtime.unit import Attempt

__all__ = [
    "SHADOW_RETENTION", "ShadowStore", "ShadowStoreReader", "compare", "shadow_emit",
    "shadow_namespace", "shadow_store", "shadow_stream",
]

SHADOW_RETENTION = 7 * 24 * 3600.0  # seconds the shadow stream keeps a shadow's events
_TOMBSTONE = b'{"setpiece.shadow":"deleted"}'  # a key the shadow deleted (hides the primary's)
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def shadow_namespace(service: str, tenant: str | None = None) -> str:
    """The engine namespace of a shadow version's store."""
    return "shadow:" + store_namespace(service, tenant)


def shadow_stream(service: str) -> str:
    """The stream that holds what a shadow version of ``service`` emitted (never a bus's)."""
    return f"setpiece.shadow.{service}"


class ShadowStoreReader(StoreReader):
    """A shadow's store read from outside: keys it deleted read as absent."""

    async def get(self, key: str, default: Any = None) -> Any:
        found = await self._engine.kv_get(self.namespace, [check_key(key)])
        if key not in found or found[key][0] == _TOMBSTONE:
            return default
        return _decode(found[key][0])

    async def items(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, Any]]:
        rows = await self._engine.kv_scan(self.namespace, prefix, limit)
        return [(k, _decode(v)) for k, v in rows if v != _TOMBSTONE]


class ShadowStore(ServiceStore):
    """A shadow's store in a delivery: its own namespace over the primary's committed values."""

    __slots__ = ("_primary",)

    def __init__(self, attempt: Attempt, namespace: str, primary: str) -> None:
        super().__init__(attempt, namespace)
        self._primary = primary

    async def get(self, key: str, default: Any = None) -> Any:
        check_key(key)
        raw = await self._attempt.get((self.namespace, key))
        if raw is None:
            raw = await self._attempt.get((self._primary, key))
        elif raw == _TOMBSTONE:
            raw = None
        return default if raw is None else _decode(raw)

    async def delete(self, key: str) -> None:
        check_key(key)
        self._attempt.put((self.namespace, key), _TOMBSTONE)


def shadow_store(service: str) -> Callable[[Attempt, Event], ServiceStore]:
    """Makes the store a shadow version of ``service`` sees in each attempt."""

    def make(attempt: Attempt, event: Event) -> ServiceStore:
        return ShadowStore(attempt, shadow_namespace(service, event.tenant),
                           store_namespace(service, event.tenant))

    return make


def shadow_emit(
    service: str,
    target_stream: Callable[[str | None, str | None], str],
    max_bytes: int,
) -> Callable[..., None]:
    """The emit of a shadow version: each event, checked as the primary's would be, goes to the
    shadow stream with the stream or bus it was meant for."""
    stream = shadow_stream(service)

    def emit(
        attempt: Attempt, event: Event, bus: str | None, stream_name: str | None, *,
        cause: Event, service: str,
    ) -> None:
        out = prepare(event, cause=cause, service=service)
        target = target_stream(bus, stream_name)
        data = encode_checked(out, max_bytes)
        record = {"target": target, "cause": cause.id, "event": msgspec.Raw(data),
                  "time": time.time()}
        attempt.emit(stream, out.partitionkey, _encode(record))

    return emit


# -- comparing ------------------------------------------------------------------------------------


def compare(primary: Attempt, shadow: Attempt, event: Event) -> dict[str, Any] | None:
    """None when the shadow's attempt did what the primary's did with ``event``; otherwise the
    mismatch (``{"event", "type", "key", "primary", "shadow"}``, each side's store writes and
    events)."""
    mine = _effects(primary, "svc:", _decode_primary)
    theirs = _effects(shadow, "shadow:svc:", _decode_shadow)
    if mine == theirs:
        return None
    return {"event": event.id, "type": event.type, "key": event.partitionkey,
            "primary": _shown(mine), "shadow": _shown(theirs)}


def _decode_primary(stream: str, value: bytes) -> Any:
    if stream.startswith("setpiece."):
        return None  # not an emitted event (a workflow's record)
    return _comparable(stream, _decode(value))


def _decode_shadow(stream: str, value: bytes) -> Any:
    d = _decode(value)
    return _comparable(d["target"], d["event"])


_COMPARED = ("type", "source", "subject", "dataschema", "partitionkey", "tenant", "data")


def _comparable(target: str, event: dict[str, Any]) -> Any:
    return [target, *(event.get(name) for name in _COMPARED)]


def _effects(
    attempt: Attempt, prefix: str, decode: Callable[[str, bytes], Any]
) -> tuple[dict[str, Any], list[Any]]:
    """An attempt's store writes (by tenant and key) and emitted events, comparable."""
    writes: dict[str, Any] = {}
    for (namespace, key), value in attempt.writes.items():
        if namespace.startswith(prefix):
            tenant = namespace[len(prefix):].partition("@")[2]
            shown = None if value is None or value == _TOMBSTONE else _decode(value)
            writes[f"{tenant}/{key}" if tenant else key] = shown
    events = [e for e in (decode(s, v) for s, _, v in attempt.appends) if e is not None]
    return writes, events


def _shown(effects: tuple[dict[str, Any], list[Any]]) -> dict[str, Any]:
    writes, events = effects
    return {
        "store": writes,
        "events": [{"target": e[0], **dict(zip(_COMPARED, e[1:], strict=True))} for e in events],
    }
