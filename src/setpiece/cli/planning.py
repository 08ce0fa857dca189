"""``setpiece plan`` and ``setpiece apply``: the change set between a stack and an engine.

Like a CloudFormation change set: what the stack declares (its streams with their partitions
and retention, the dead-letter stream, one consumer group per handler and rule target) against
what the engine holds, each item one of

* ``add`` — declared, not in the engine yet (``apply`` creates it);
* ``modify`` — declared differently (retention; on NATS, a JetStream stream missing or with
  another ``max_age``); ``apply`` changes it in place;
* ``blocked`` — a change ``apply`` cannot make in place (a stream's partition count: records
  are placed by key hash, so changing it needs a new stream and a migration);
* ``unchanged``;
* ``delete`` — in the engine, no longer declared (a stream, or a consumer group's offsets).
  Shown always, applied only with ``--allow-delete``, after confirmation (or ``--yes``).

Event schemas (``Stack(schemas=[...])``) are items too, one per declared version: ``add`` (not
in the engine's schema registry yet), ``unchanged``, or ``blocked`` when the registry would
refuse it (it breaks its type's compatibility rule: the detail names the path and the rule).
The registry keeps every version it was given: nothing of it is ever deleted.

``plan`` changes nothing: it does not even create the database file or the PostgreSQL schema
(it reports them as ``add``). ``apply`` creates what is missing exactly as a starting worker
would (a bus rule's group starts at the end of its bus, a stream handler's at the start).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from setpiece._assembly import new_runtime
from setpiece.engine.contract import Engine, StreamSpec
from setpiece.errors import ConfigError
from setpiece.schemas._registry import SchemaRegistry, plan_schemas
from setpiece.stack import Stack

__all__ = ["Change", "ChangeSet", "apply_changes", "make_plan"]

Action = Literal["add", "modify", "blocked", "unchanged", "delete"]
Kind = Literal["storage", "stream", "group", "schema"]


@dataclass(frozen=True, slots=True)
class Change:
    """One item of the change set. ``name`` is a stream, or ``group@stream`` for a group."""

    action: Action
    kind: Kind
    name: str
    detail: str = ""
    stream: StreamSpec | None = None  # the declared stream (add / modify)
    group: tuple[str, str] | None = None  # (group, stream) of a group item

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Every item, in a stable order: storage, streams, groups, schemas."""

    engine: str
    changes: tuple[Change, ...]

    def of(self, *actions: Action) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def pending(self) -> bool:
        """Anything for ``apply`` to do (deletions included)."""
        return any(c.action != "unchanged" for c in self.changes)

    def summary(self) -> str:
        counts = {a: len(self.of(a)) for a in ("add", "modify", "blocked", "unchanged", "delete")}
        return ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing declared"


def _retention(value: float | None) -> str:
    return "forever" if value is None else f"{value:g}s"


def declared(stack: Stack, engine: Engine) -> tuple[list[StreamSpec], list[tuple[str, str, bool]]]:
    """The stack's streams, and its groups as (group, stream, starts at the end)."""
    runtime = new_runtime(stack, engine)
    specs = runtime._stream_specs()
    runtime._build_consumers()
    groups = [(c.group, c.stream, c.start_at_end) for c in runtime.consumers]
    return specs, groups


async def make_plan(
    stack: Stack, url: str, store: str | None, opener: Callable[[], Awaitable[Engine]]
) -> ChangeSet:
    """The change set for ``stack`` on the engine at ``url`` (``opener`` opens it)."""
    storage = await _storage(url, store)
    changes: list[Change] = []
    if storage is not None:  # nothing there yet: everything is an add, and nothing is opened
        changes.append(Change("add", "storage", storage[0], storage[1]))
        from setpiece.engine import open_engine

        scratch = await open_engine("memory")  # declarations need an engine, not its data
        try:
            specs, groups = declared(stack, scratch)
            schemas = await _schemas(stack, scratch)
        finally:
            await scratch.close()
        changes += [Change("add", "stream", s.name, _describe(s), stream=s) for s in specs]
        changes += [Change("add", "group", f"{g}@{s}", _start(at_end), group=(g, s))
                    for g, s, at_end in groups]
        return ChangeSet(url, tuple(changes + schemas))
    engine = await opener()
    try:
        return ChangeSet(url, tuple(await _diff(stack, engine)))
    finally:
        await engine.close()


async def _schemas(stack: Stack, engine: Engine) -> list[Change]:
    """The stack's schema versions against the engine's registry."""
    planned = await plan_schemas(stack.schemas, SchemaRegistry(engine))
    return [Change(cast(Action, c.action), "schema", f"{c.type} v{c.version}", c.detail)
            for c in planned]


def _describe(spec: StreamSpec) -> str:
    return f"partitions {spec.partitions}, retention {_retention(spec.retention)}"


def _start(at_end: bool) -> str:
    return "starts at the end of the stream" if at_end else "starts at the beginning"


async def _diff(stack: Stack, engine: Engine) -> list[Change]:
    specs, groups = declared(stack, engine)
    changes: list[Change] = [Change("unchanged", "storage", engine.url, "exists")]
    have = {s.name: s for s in await engine.streams()}
    drift: Callable[[StreamSpec], Awaitable[list[str]]] | None = getattr(engine, "drift", None)
    for spec in specs:
        old = have.get(spec.name)
        if old is None:
            changes.append(Change("add", "stream", spec.name, _describe(spec), stream=spec))
            continue
        if old.partitions != spec.partitions:
            changes.append(Change(
                "blocked", "stream", spec.name,
                f"partitions {old.partitions} -> {spec.partitions}: cannot change in place "
                "(keys would move partitions); declare a new stream and migrate",
                stream=spec,
            ))
            continue
        notes = []
        if old.retention != spec.retention:
            notes.append(f"retention {_retention(old.retention)} -> {_retention(spec.retention)}")
        if drift is not None:
            notes += await drift(spec)
        if notes:
            changes.append(Change("modify", "stream", spec.name, "; ".join(notes), stream=spec))
        else:
            changes.append(Change("unchanged", "stream", spec.name, _describe(spec)))
    wanted = {s.name for s in specs}
    for name, old in sorted(have.items()):
        if name not in wanted:
            changes.append(Change(
                "delete", "stream", name,
                f"no longer declared: drops its records ({_describe(old)}) and its groups",
            ))
    have_groups = set(await engine.groups())
    declared_groups = {(g, s) for g, s, _ in groups}
    for group, stream, at_end in groups:
        action: Action = "unchanged" if (group, stream) in have_groups else "add"
        changes.append(Change(action, "group", f"{group}@{stream}",
                              "" if action == "unchanged" else _start(at_end),
                              group=(group, stream)))
    for group, stream in sorted(have_groups - declared_groups):
        if stream in wanted:  # groups of deleted streams go with their stream
            changes.append(Change("delete", "group", f"{group}@{stream}",
                                  "no longer declared: forgets its committed offsets",
                                  group=(group, stream)))
    return changes + await _schemas(stack, engine)


async def apply_changes(
    stack: Stack, engine: Engine, plan: ChangeSet, *, allow_delete: bool
) -> list[Change]:
    """Make the engine match the stack; returns the changes made.

    Refuses (ConfigError) when the plan has ``blocked`` items, before changing anything.
    Deletions happen only with ``allow_delete``.
    """
    blocked = plan.of("blocked")
    if blocked:
        names = ", ".join(c.name for c in blocked)
        raise ConfigError(f"apply: cannot change in place: {names} (see plan)")
    done: list[Change] = []
    # Deletions first: a group declared again after its deletion then starts afresh.
    for change in plan.of("delete") if allow_delete else []:
        if change.kind == "stream":
            drop_stream: Callable[[str], Awaitable[None]] | None = getattr(
                engine, "drop_stream", None)
            if drop_stream is None:
                raise ConfigError(f"apply: engine {engine.url} cannot delete streams")
            await drop_stream(change.name)
        elif change.group is not None:
            drop_group: Callable[[str, str], Awaitable[None]] | None = getattr(
                engine, "drop_group", None)
            if drop_group is None:
                raise ConfigError(f"apply: engine {engine.url} cannot delete groups")
            await drop_group(*change.group)
        done.append(change)
    runtime = new_runtime(stack, engine)
    await runtime.provision()  # creates and reconfigures streams, creates missing groups
    registry = SchemaRegistry(engine)
    for event_type, versions in stack.schemas.items():
        for schema in versions:
            await registry.register(event_type, schema.version, schema.document,
                                    schema.compatibility)
    done += [c for c in plan.changes if c.action in ("add", "modify")]
    return done


async def _storage(url: str, store: str | None) -> tuple[str, str] | None:
    """(name, detail) of the storage the engine would create, or None if it exists."""
    from setpiece.cli._common import sqlite_path

    path = sqlite_path(url)
    if path is not None:
        return None if path.exists() else (url, f"SQLite file {str(path)!r} with setpiece's tables")
    if url == "memory":
        return (url, "SQLite in memory (gone when the command ends)")
    if store is None:
        return None  # the engine will say what is missing
    from setpiece.engine.postgres.store import split_store_url

    dsn, schema = split_store_url(store)
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 30)
    except Exception:  # unreachable: opening the engine reports it properly
        return None
    try:
        exists = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".sp_meta'
        )
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    if exists:
        return None
    return (f"schema {schema}", f"PostgreSQL schema {schema!r} with setpiece's tables")
