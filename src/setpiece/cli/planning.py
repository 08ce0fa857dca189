"""``setpiece plan``, ``apply``, ``rollback`` and ``history``: the change set between a stack (or
a recorded deployment) and an engine, applied with undo and recorded.

Event schemas (``Stack(schemas=[...])``) are items too, one per declared version: ``add`` (not
in the engine's schema registry yet), ``unchanged``, or ``blocked`` when the registry would
refuse it (it breaks its type's compatibility rule: the detail names the path and the rule).
``apply`` registers new versions before its other steps; the registry keeps every version it was
given (nothing of it is deleted, undone or rolled back).

The change set, its steps and the history live in :mod:`setpiece.deploy`; this module turns a
stack into the resources it needs (a runtime, never started, on a scratch in-memory engine,
knows which streams and consumer groups its handlers, rules and extensions use) and finds
whether the engine's storage exists yet.

``plan`` changes nothing: it does not even create the database file or the PostgreSQL schema
(it reports them as ``add``). ``apply`` creates what is missing exactly as a starting worker
would (a bus rule's group starts at the end of its bus, a stream handler's at the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from setpiece._assembly import new_runtime
from setpiece.deploy import (
    Change,
    ChangeSet,
    Deployment,
    GroupSpec,
    History,
    Resources,
    additions,
    check,
    deploy,
    describe,
    diff,
)
from setpiece.deploy.plan import Action
from setpiece.engine.contract import Engine
from setpiece.schemas._registry import SchemaRegistry, plan_schemas
from setpiece.schemas.schema import Schema
from setpiece.stack import Stack

__all__ = [
    "Change", "ChangeSet", "apply_changes", "deployer", "make_plan", "resources_of",
    "rollback_to", "stack_plan",
]

Opener = Callable[[], Awaitable[Engine]]


async def resources_of(stack: Stack) -> Resources:
    """The streams and groups ``stack`` needs, found on a scratch in-memory engine."""
    from setpiece.engine import open_engine

    scratch = await open_engine("memory")  # declarations need an engine, not its data
    try:
        runtime = new_runtime(stack, scratch)
        await runtime._attach()  # extensions add their streams and consumers (workflows)
        runtime._build_consumers()
        streams = runtime._stream_specs() + await scratch.streams()
        groups = [GroupSpec(c.group, c.stream, c.start_at_end) for c in runtime.consumers]
        return Resources.of(streams, groups)
    finally:
        await scratch.close()


async def make_plan(
    resources: Resources, url: str, store: str | None, opener: Opener,
    schemas: Mapping[str, Sequence[Schema]] | None = None,
) -> ChangeSet:
    """The change set from the engine at ``url`` (``opener`` opens it) to ``resources`` (and
    the schema versions ``schemas`` declares)."""
    storage = await _storage(url, store)
    if storage is not None:  # nothing there yet: everything is an add, and nothing is opened
        from setpiece.engine import open_engine

        scratch = await open_engine("memory")
        try:
            planned = await _schemas(schemas or {}, scratch)
        finally:
            await scratch.close()
        return ChangeSet(url, (Change("add", "storage", storage[0], storage[1]),
                               *additions(resources), *planned))
    engine = await opener()
    try:
        changes = [Change("unchanged", "storage", engine.url, "exists")]
        changes += await diff(resources, engine)
        return ChangeSet(url, tuple(changes + await _schemas(schemas or {}, engine)))
    finally:
        await engine.close()


async def _schemas(schemas: Mapping[str, Sequence[Schema]], engine: Engine) -> list[Change]:
    """The declared schema versions against the engine's registry."""
    planned = await plan_schemas(schemas, SchemaRegistry(engine))
    return [Change(cast(Action, c.action), "schema", f"{c.type} v{c.version}", c.detail)
            for c in planned]


async def stack_plan(
    stack: Stack, url: str, store: str | None, opener: Opener
) -> tuple[ChangeSet, dict[str, Any]]:
    """The change set for ``stack``, and the definition ``apply`` would record."""
    resources = await resources_of(stack)
    plan = await make_plan(resources, url, store, opener, stack.schemas)
    return plan, describe(stack, resources)


def deployer() -> str:
    """Who deploys: ``SETPIECE_DEPLOYER``, else ``user@host``."""
    named = os.environ.get("SETPIECE_DEPLOYER")
    if named:
        return named
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def apply_changes(
    engine: Engine, plan: ChangeSet, definition: Mapping[str, Any], *, allow_delete: bool,
    schemas: Mapping[str, Sequence[Schema]] | None = None,
) -> Deployment | None:
    """Apply the change set and record the deployment (None: nothing to do).

    Refuses (ConfigError) blocked items, and deletions of what holds data without
    ``allow_delete``, before changing anything; registers the new schema versions of
    ``schemas``; a refused step is undone (DeployError).
    """
    changes = [c for c in plan.changes if c.kind != "storage"]
    check(changes, allow_delete=allow_delete)
    registry = SchemaRegistry(engine)
    for event_type, versions in (schemas or {}).items():
        for schema in versions:
            await registry.register(event_type, schema.version, schema.document,
                                    schema.compatibility)
    return await deploy(engine, [c for c in changes if c.kind != "schema"], definition,
                        allow_delete=allow_delete, by=deployer(), at=time.time())


async def rollback_to(
    url: str, opener: Opener, to: int | None
) -> tuple[Deployment, Deployment, ChangeSet]:
    """(current deployment, deployment to return to, change set to it); ``to`` defaults to
    the one before the current."""
    from setpiece.errors import ConfigError

    engine = await opener()
    try:
        history = History(engine)
        current = await history.current()
        if current is None:
            raise ConfigError(f"no deployment recorded on {url}: nothing to roll back")
        number = current.number - 1 if to is None else to
        if number < 1:
            raise ConfigError(f"deployment {current.number} is the first: nothing before it")
        if number == current.number:
            raise ConfigError(f"deployment {number} is the current one")
        target = await history.get(number)
        changes = await diff(target.resources, engine)
        return current, target, ChangeSet(url, tuple(changes))
    finally:
        await engine.close()


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
