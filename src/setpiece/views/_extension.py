"""Views as an extension of the runtime (:mod:`setpiece.runtime.extension`).

Attached to runtimes of stacks that declare views, it contributes one consumer per view (the
batch path of :mod:`setpiece.views._processor`), the ``views`` context service behind
``ctx.view(name)``, a background sweep of expired table rows, and one read-only HTTP route per
view on the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece.clock import SYSTEM_CLOCK, Clock
from setpiece.context import VIEWS
from setpiece.engine.contract import KVRead, KVWrite, OffsetCommit, UnitOfWork
from setpiece.errors import ConfigError, ConflictError
from setpiece.runtime.extension import EndpointCall, HttpEndpoint
from setpiece.views._processor import ViewConsumer, source_stream
from setpiece.views._state import JoinedReader, Layout, ViewReader
from setpiece.views.declarations import (
    Aggregate,
    Join,
    SourcedView,
    StreamJoin,
    Table,
    TableJoin,
    View,
)

if TYPE_CHECKING:
    from setpiece.engine.contract import Engine
    from setpiece.runtime.runtime import Runtime

__all__ = ["EXTENSION", "Views"]

EXTENSION = "views"
REGISTRY = "setpiece.views"  # view name -> the fingerprint of the generation in use
_SWEEP_MAX = 60.0
_MISSING: Any = object()


class Views:
    """The extension. ``reader(name)`` reads a view's committed state."""

    name = EXTENSION

    def __init__(self, views: dict[str, View]) -> None:
        self.views = views
        self._engine: Engine | None = None
        self._now: Any = time.time
        self._clock: Clock = SYSTEM_CLOCK
        self._stopped = asyncio.Event()

    def reader(self, name: str, tenant: str | None = None) -> ViewReader | JoinedReader:
        view = self.views.get(name)
        if view is None:
            raise ConfigError(f"the stack has no view {name!r} (views: {sorted(self.views)})")
        assert self._engine is not None
        if isinstance(view, TableJoin):
            return JoinedReader(self._engine, view, self._now, tenant)
        if isinstance(view, StreamJoin):
            raise ConfigError(f"view {name!r} is a stream-stream join: it keeps no table to "
                              f"read (read its output stream {view.emit_to.name!r})")
        return ViewReader(self._engine, view, self._now, tenant)

    async def attach(self, runtime: Runtime) -> None:
        self._engine = engine = runtime.engine
        self._clock = clock = runtime.clock
        self._now = clock.time
        runtime.add_context_service(VIEWS, lambda attempt: self)
        for name, view in self.views.items():
            if isinstance(view, Join | StreamJoin):
                continue  # no state to serve: their output is a stream
            scope = f"views:{name}"
            runtime.add_endpoint(HttpEndpoint(
                "GET", f"/views/{name}", scope, self._list(name),
                summary=f"Rows of view {name!r} (query: prefix, start, end, limit)"))
            runtime.add_endpoint(HttpEndpoint(
                "GET", f"/views/{name}/{{key}}", scope, self._one(name),
                summary=f"One key of view {name!r}"))
        if runtime.config.services:
            return  # workers limited to some services keep no views
        for view in self.views.values():
            if isinstance(view, TableJoin):
                continue  # computed when read
            if isinstance(view, StreamJoin):
                for side, source in (("left", view.left), ("right", view.right)):
                    runtime.add_consumer(ViewConsumer(
                        view, engine, runtime.config, runtime.reader(source_stream(source)),
                        clock, runtime.notify_progress, side=side))
                continue
            await self._generation(engine, view)
            consumer = ViewConsumer(view, engine, runtime.config,
                                    runtime.reader(source_stream(view.source)), clock,
                                    runtime.notify_progress)
            runtime.add_consumer(consumer)
            if isinstance(view, Table) and view.ttl is not None:
                runtime.add_task(f"view {view.name} expiry", self._sweeper(view))

    async def stop(self) -> None:
        self._stopped.set()

    # -- serving: read-only HTTP routes on the gateway -------------------------------------

    def _one(self, name: str) -> Any:
        async def handle(call: EndpointCall) -> tuple[int, Any]:
            key = call.params["key"]
            reader = self.reader(name, call.tenant)
            if isinstance(reader, ViewReader) and isinstance(reader.view, Aggregate):
                windows = await reader.windows(key)
                if not windows:
                    return 404, {"error": "not_found", "detail": f"no windows for {key!r}"}
                return 200, {"key": key, "windows": [
                    {"start": s, "end": e, "value": v} for s, e, v in windows]}
            value = await reader.get(key, _MISSING)
            if value is _MISSING:
                return 404, {"error": "not_found", "detail": f"no row {key!r}"}
            return 200, {"key": key, "value": value}

        return handle

    def _list(self, name: str) -> Any:
        async def handle(call: EndpointCall) -> tuple[int, Any]:
            params = call.params
            try:
                limit = int(params.get("limit", "100"))
            except ValueError:
                limit = 0
            if not 1 <= limit <= 1000:
                return 400, {"error": "bad_request", "field": "limit",
                             "detail": "limit must be an integer from 1 to 1000"}
            reader = self.reader(name, call.tenant)
            if "start" in params:
                if isinstance(reader, ViewReader) and isinstance(reader.view, Aggregate):
                    return 400, {"error": "bad_request", "field": "start",
                                 "detail": "a range is read from a table"}
                rows = await reader.range(params["start"], params.get("end"), limit=limit)
            else:
                rows = await reader.items(params.get("prefix", ""), limit=limit)
            if rows and isinstance(rows[0][0], tuple):  # an aggregate's windows
                return 200, {"items": [{"key": k, "start": s, "end": e, "value": v}
                                       for (k, s, e), v in rows]}
            return 200, {"items": [{"key": k, "value": v} for k, v in rows]}

        return handle

    async def _generation(self, engine: Engine, view: SourcedView) -> None:
        """Start a view's generation: rebuilt from the log when its state is missing (its
        offsets moved but its marker is gone) or its definition changed (a new generation,
        whose group starts at the log's start); the old generation's state is removed."""
        if isinstance(view, Join):
            return
        layout = Layout(view)
        stream = source_stream(view.source)
        groups = set(await engine.groups())
        marker = await engine.kv_get(layout.meta, ["definition"])
        work = UnitOfWork(writes=[KVWrite(layout.meta, "definition", layout.fp.encode())],
                          reads=[KVRead(layout.meta, "definition", 0)])
        if "definition" in marker:
            work = UnitOfWork()
        elif (layout.group, stream) in groups:  # offsets without state: rebuild from the log
            committed = await engine.committed(layout.group, stream)
            starts = await engine.start_offsets(stream)
            work.offsets = [OffsetCommit(layout.group, stream, p, committed[p], starts[p])
                            for p in committed if committed[p] != starts[p]]
        previous = (await engine.kv_get(REGISTRY, [view.name])).get(view.name)
        if previous is None or previous[0].decode() != layout.fp:
            work.writes.append(KVWrite(REGISTRY, view.name, layout.fp.encode()))
        if not work.empty():
            with contextlib.suppress(ConflictError):  # another process started it first
                await engine.commit(work)
        if previous is not None and previous[0].decode() != layout.fp:
            await _remove_generation(engine, view.name, previous[0].decode())

    def _sweeper(self, table: Table) -> Any:
        assert table.ttl is not None
        interval = min(table.ttl, _SWEEP_MAX)
        layout = Layout(table)

        async def sweep() -> None:
            engine = self._engine
            assert engine is not None
            while not self._stopped.is_set():
                now = self._now() * 1000
                rows = await engine.kv_scan(layout.state, "", 10_000_000)
                expired = [k for k, v in rows if _expired(v, now)]
                for start in range(0, len(expired), 1000):
                    chunk = expired[start:start + 1000]
                    found = await engine.kv_get(layout.state, chunk)
                    gone = [k for k, (v, _) in found.items() if _expired(v, now)]
                    work = UnitOfWork(
                        reads=[KVRead(layout.state, k, found[k][1]) for k in gone],
                        writes=[KVWrite(layout.state, k, None) for k in gone])
                    with contextlib.suppress(ConflictError):  # updated meanwhile: kept
                        await engine.commit(work)
                await self._clock.wait(self._stopped, interval)

        return sweep


def _expired(raw: bytes, now_ms: float) -> bool:
    expires = msgspec.json.decode(raw)[1]
    return expires is not None and expires <= now_ms


async def _remove_generation(engine: Engine, name: str, fp: str) -> None:
    base = f"view:{name}#{fp}"
    for ns in (base, f"{base}:open", f"{base}:meta", f"{base}:buf"):
        while True:
            rows = await engine.kv_scan(ns, "", 1000)
            if not rows:
                break
            await engine.commit(UnitOfWork(writes=[KVWrite(ns, k, None) for k, _ in rows]))
