"""The schema registry, kept in the engine's key-value store and shared by every worker.

One row per event type (namespace ``setpiece.schemas``, key the type) holds every registered
version with its compatibility mode. Registering a version reads the row, checks the new schema
against the registered ones under the new version's mode (against the latest, or every earlier
one for the ``_TRANSITIVE`` modes), and writes the row in a unit of work that also checks the
row's version: two workers registering at once cannot both win. The row carries a format number;
a row written by a newer setpiece is refused with an error that says so, never misread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from setpiece.engine.contract import Engine, KVRead, KVWrite, UnitOfWork
from setpiece.errors import ConflictError, EngineError, SchemaError
from setpiece.schemas._compat import breaking_changes
from setpiece.schemas.schema import Schema

__all__ = [
    "NAMESPACE", "ROW_FORMAT", "Registered", "SchemaChange", "SchemaRegistry", "plan_schemas",
]

NAMESPACE = "setpiece.schemas"
ROW_FORMAT = 1  # the row layout this setpiece writes and reads
_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Registered:
    """One registered version of an event type's schema."""

    type: str
    version: int
    compatibility: str
    document: dict[str, Any]


class SchemaRegistry:
    """Registered schemas per event type, in ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def versions(self, event_type: str) -> list[Registered]:
        """Every registered version of ``event_type``, oldest first (empty if none)."""
        found = await self.engine.kv_get(NAMESPACE, [event_type])
        return _decode(event_type, found[event_type][0]) if event_type in found else []

    async def types(self) -> list[str]:
        """The event types with a registered schema, in order."""
        return [key for key, _ in await self.engine.kv_scan(NAMESPACE, "", 1_000_000)]

    async def register(
        self, event_type: str, version: int, document: dict[str, Any], compatibility: str
    ) -> bool:
        """Register ``version`` of ``event_type``; False if it is registered already with the
        same document. SchemaError (naming the path and rule) if it breaks compatibility, or
        if that version is registered with another document."""
        for _ in range(_ATTEMPTS):
            found = await self.engine.kv_get(NAMESPACE, [event_type])
            raw, row_version = found.get(event_type, (b"", 0))
            registered = _decode(event_type, raw) if raw else []
            same = next((r for r in registered if r.version == version), None)
            if same is not None:
                if same.document != document:
                    raise SchemaError(
                        f"schema {event_type!r} version {version} is registered with another "
                        "document; declare the change as a new version",
                        event_type=event_type, path="$", rule="version_changed")
                return False
            check(event_type, version, document, compatibility,
                  [r for r in registered if r.version < version])
            rows = sorted([*registered, Registered(event_type, version, compatibility, document)],
                          key=lambda r: r.version)
            work = UnitOfWork(reads=[KVRead(NAMESPACE, event_type, row_version)],
                              writes=[KVWrite(NAMESPACE, event_type, _encode(rows))])
            try:
                await self.engine.commit(work)
            except ConflictError:
                continue  # another worker registered meanwhile: check against its row
            return True
        raise EngineError(f"schema registry: could not register {event_type!r} "
                          f"in {_ATTEMPTS} attempts (rows kept changing)")


def check(event_type: str, version: int, document: dict[str, Any], compatibility: str,
          earlier: list[Registered]) -> None:
    """SchemaError naming the first breaking change of ``document`` against ``earlier``."""
    if not earlier:
        return
    against = earlier if compatibility.endswith("_TRANSITIVE") else earlier[-1:]
    for before in against:
        broken = breaking_changes(before.document, document, compatibility)
        if broken:
            first = broken[0]
            more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
            raise SchemaError(
                f"schema {event_type!r} version {version} is not {compatibility} compatible "
                f"with registered version {before.version}: {first}{more}",
                event_type=event_type, path=first.path, rule=first.rule)


class _Row(msgspec.Struct, forbid_unknown_fields=False):
    format: int
    versions: list[dict[str, Any]] = []


def _encode(rows: list[Registered]) -> bytes:
    return msgspec.json.encode({"format": ROW_FORMAT, "versions": [
        {"version": r.version, "compatibility": r.compatibility, "schema": r.document}
        for r in rows]})


def _decode(event_type: str, raw: bytes) -> list[Registered]:
    try:
        row = msgspec.json.decode(raw, type=_Row)
    except msgspec.DecodeError as exc:
        raise EngineError(f"schema registry: the row of {event_type!r} is not a setpiece "
                          f"schema row ({exc})") from None
    if row.format > ROW_FORMAT:
        raise EngineError(
            f"schema registry: the row of {event_type!r} was written by a newer setpiece "
            f"(row format {row.format}; this setpiece reads format {ROW_FORMAT}): upgrade "
            "setpiece to read it")
    try:
        return [Registered(event_type, int(v["version"]), str(v["compatibility"]),
                           dict(v["schema"])) for v in row.versions]
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"schema registry: the row of {event_type!r} is malformed "
                          f"({exc!r})") from None


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One declared schema version against the registry: ``add`` (not registered yet),
    ``unchanged``, or ``blocked`` (it would be refused; ``detail`` says why)."""

    action: str
    type: str
    version: int
    detail: str


async def plan_schemas(
    declared: Mapping[str, Sequence[Schema]], registry: SchemaRegistry
) -> list[SchemaChange]:
    """What registering ``declared`` (a stack's ``schemas``) would do, changing nothing."""
    out: list[SchemaChange] = []
    for event_type, versions in sorted(declared.items()):
        known = {r.version: r for r in await registry.versions(event_type)}
        for schema in versions:
            same = known.get(schema.version)
            if same is not None:
                if same.document == schema.document:
                    out.append(SchemaChange("unchanged", event_type, schema.version,
                                            f"registered ({same.compatibility})"))
                else:
                    out.append(SchemaChange("blocked", event_type, schema.version,
                                            "registered with another document; declare the "
                                            "change as a new version"))
                continue
            earlier = [known[v] for v in sorted(known) if v < schema.version]
            try:
                check(event_type, schema.version, schema.document, schema.compatibility, earlier)
            except SchemaError as exc:
                out.append(SchemaChange("blocked", event_type, schema.version, str(exc)))
                continue
            known[schema.version] = Registered(event_type, schema.version,
                                               schema.compatibility, schema.document)
            out.append(SchemaChange("add", event_type, schema.version,
                                    f"new version ({schema.compatibility})"))
    return out
