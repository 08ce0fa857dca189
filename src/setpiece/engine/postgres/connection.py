"""The production engine's PostgreSQL connections: the store URL, and calls on a pooled
connection retried while PostgreSQL is unreachable (restarting, failing over) for up to
``retry_for`` seconds."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from setpiece.engine.retry import UNREACHABLE
from setpiece.errors import ConfigError, EngineError

__all__ = ["CONNECTION_ERRORS", "PgConnection", "split_store_url"]

T = TypeVar("T")

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,  # "connection is closed" after the server went away
    asyncpg.exceptions.InternalClientError,  # protocol state broken by a dropped connection
)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def split_store_url(url: str) -> tuple[str, str]:
    """Take ``schema=`` out of a ``postgresql://`` URL; returns (dsn, schema)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"store URL {url!r}: use postgresql://user@host:port/database")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = "setpiece"
    rest = []
    for name, value in query:
        if name == "schema":
            schema = value
        else:
            rest.append((name, value))
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"store URL {url!r}: schema must match {_SCHEMA_NAME.pattern}")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


class PgConnection:
    """The pool every part of :class:`~setpiece.engine.postgres.PgStore` runs its SQL on."""

    url: str
    schema: str
    retry_for: float
    _pool: asyncpg.Pool
    _closed: bool

    async def call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection, retrying while PostgreSQL is unreachable."""
        backoff = UNREACHABLE.backoff(self.retry_for)
        while True:
            self.check_open()
            try:
                async with self._pool.acquire() as conn:
                    return await fn(conn)
            except CONNECTION_ERRORS as exc:
                if not await backoff.pause():
                    raise EngineError(f"PostgreSQL unreachable: {exc}") from exc

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async def run(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

        return await self.call(run)

    async def execute(self, query: str, *args: object) -> str:
        async def run(conn: asyncpg.Connection) -> str:
            status: str = await conn.execute(query, *args)
            return status

        return await self.call(run)

    def check_open(self) -> None:
        if self._closed:
            raise EngineError("engine is closed")
