"""Where a test's ephemeral stack runs: ``memory``, an SQLite file in the test's directory, or
its own namespace on shared NATS + PostgreSQL servers (a NATS ``?prefix=`` and a PostgreSQL
schema of the same name), emptied when the test ends.

Creating a schema's tables costs PostgreSQL a few hundred milliseconds of DDL, so a process
keeps the namespaces its tests have finished with (:class:`Namespaces`): once emptied (its
JetStream streams deleted, its tables emptied) a namespace is given to the next test, and
every one is dropped when the session ends. No test sees another's streams, records or state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from setpiece.engine.postgres.connection import split_store_url
from setpiece.engine.servers import NatsServer, PostgresServer, nats_server, postgres_server
from setpiece.errors import ConfigError

__all__ = [
    "ENGINES", "EngineUrls", "Namespaces", "Servers", "drop_namespace", "empty_namespace",
    "engine_urls", "started_servers",
]

ENGINES = ("memory", "sqlite", "nats")


@dataclass(frozen=True, slots=True)
class Servers:
    """One NATS and one PostgreSQL server for a test session. ``nats`` and ``postgres`` are the
    server processes when this session started them (None when it was given their URLs)."""

    nats_url: str
    postgres_url: str
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None


@dataclass(frozen=True, slots=True)
class EngineUrls:
    """The engine (and store) URL a test's stacks start on; ``namespace`` names the NATS prefix
    and PostgreSQL schema on the production engine (None on the others)."""

    kind: str
    engine: str
    store: str | None = None
    namespace: str | None = None


@contextlib.contextmanager
def started_servers() -> Iterator[Servers]:
    """Start one nats-server and one PostgreSQL from the wheels; stop both on exit."""
    with nats_server() as nats, postgres_server() as postgres:
        yield Servers(nats.url, postgres.url, nats, postgres)


def engine_urls(kind: str, directory: Path, servers: Servers | None,
                namespace: str | None = None) -> EngineUrls:
    """Fresh, empty storage of ``kind`` (``memory``, ``sqlite`` or ``nats``) for one test; on
    ``nats``, in ``namespace`` (an empty one) or a new one."""
    if kind == "memory":
        return EngineUrls(kind, "memory")
    if kind == "sqlite":
        return EngineUrls(kind, f"sqlite:///{directory / 'setpiece.db'}")
    if kind == "nats":
        assert servers is not None
        name = namespace or f"t{uuid.uuid4().hex[:16]}"
        return EngineUrls(kind, _with_query(servers.nats_url, f"prefix={name}"),
                          _with_query(servers.postgres_url, f"schema={name}"), name)
    raise ConfigError(f"setpiece engine {kind!r}: must be one of {', '.join(ENGINES)}")


def _with_query(url: str, option: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


class Namespaces:
    """The emptied namespaces of one process's finished tests, handed to the next ones."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self._free: list[EngineUrls] = []
        self._all: list[EngineUrls] = []

    def take(self, directory: Path) -> EngineUrls:
        """An empty namespace: one given back, else a new one."""
        if self._free:
            return self._free.pop()
        urls = engine_urls("nats", directory, self.servers)
        self._all.append(urls)
        return urls

    async def give_back(self, urls: EngineUrls) -> None:
        """Empty ``urls``' namespace for the next test (drop it if that fails)."""
        try:
            await empty_namespace(urls)
        except BaseException:
            self._all.remove(urls)
            await drop_namespace(urls)
            raise
        self._free.append(urls)

    async def drop_all(self) -> None:
        """Drop every namespace this process made (the session ends)."""
        urls, self._all, self._free = self._all, [], []
        await asyncio.gather(*(drop_namespace(u) for u in urls))


async def empty_namespace(urls: EngineUrls) -> None:
    """Delete a namespace's JetStream streams and empty its tables (its schema stays)."""
    assert urls.namespace is not None and urls.store is not None
    await asyncio.gather(_drop_streams(urls.engine, urls.namespace), _empty_schema(urls.store))


async def _empty_schema(store: str) -> None:
    import asyncpg

    dsn, schema = split_store_url(store)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> 'sp_meta'",
            schema,
        )
        # sp_meta stays: the schema's version and the NATS prefix it belongs to. DELETE, not
        # TRUNCATE: a test leaves a few rows, and TRUNCATE rewrites every table's files.
        if tables:
            await conn.execute("; ".join(f'DELETE FROM "{schema}"."{r[0]}"' for r in tables))
    finally:
        await conn.close()


async def drop_namespace(urls: EngineUrls) -> None:
    """Delete a test's JetStream streams (those under its prefix) and drop its schema."""
    assert urls.namespace is not None and urls.store is not None
    await asyncio.gather(_drop_streams(urls.engine, urls.namespace), _drop_schema(urls.store))


async def _drop_streams(url: str, prefix: str) -> None:
    import nats

    server = urlunsplit(urlsplit(url)._replace(query=""))
    nc = await nats.connect(servers=[server], connect_timeout=5, allow_reconnect=False)
    try:
        jsm = nc.jsm()
        names: list[str] = []
        while True:  # the JetStream API lists stream names a page at a time
            reply = await nc.request(
                "$JS.API.STREAM.NAMES",
                json.dumps({"offset": len(names), "subject": f"{prefix}.>"}).encode(),
                timeout=10,
            )
            page = json.loads(reply.data)
            found = page.get("streams") or []
            names += found
            if not found or len(names) >= page.get("total", 0):
                break

        async def delete(name: str) -> None:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await jsm.delete_stream(name)

        await asyncio.gather(*(delete(n) for n in names if n.startswith(f"{prefix}-")))
    finally:
        await nc.close()


async def _drop_schema(store: str) -> None:
    import asyncpg

    dsn, schema = split_store_url(store)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
