"""Where a test's ephemeral stack runs: ``memory``, an SQLite file in the test's directory, or
its own namespace on shared NATS + PostgreSQL servers (a NATS ``?prefix=`` and a PostgreSQL
schema of the same name), removed when the test ends."""

from __future__ import annotations

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

__all__ = ["ENGINES", "EngineUrls", "Servers", "drop_namespace", "engine_urls", "started_servers"]

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


def engine_urls(kind: str, directory: Path, servers: Servers | None) -> EngineUrls:
    """Fresh, empty storage of ``kind`` (``memory``, ``sqlite`` or ``nats``) for one test."""
    if kind == "memory":
        return EngineUrls(kind, "memory")
    if kind == "sqlite":
        return EngineUrls(kind, f"sqlite:///{directory / 'setpiece.db'}")
    if kind == "nats":
        assert servers is not None
        name = f"t{uuid.uuid4().hex[:16]}"
        return EngineUrls(kind, _with_query(servers.nats_url, f"prefix={name}"),
                          _with_query(servers.postgres_url, f"schema={name}"), name)
    raise ConfigError(f"setpiece engine {kind!r}: must be one of {', '.join(ENGINES)}")


def _with_query(url: str, option: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


async def drop_namespace(urls: EngineUrls) -> None:
    """Delete a test's JetStream streams (those under its prefix) and drop its schema."""
    import asyncpg
    import nats

    assert urls.namespace is not None and urls.store is not None
    prefix = urls.namespace
    server = urlunsplit(urlsplit(urls.engine)._replace(query=""))
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
        for name in names:
            if name.startswith(f"{prefix}-"):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await jsm.delete_stream(name)
    finally:
        await nc.close()
    dsn, schema = split_store_url(urls.store)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
