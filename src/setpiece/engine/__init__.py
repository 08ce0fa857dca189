"""Engines: the contract (:mod:`setpiece.engine.contract`), the embedded SQLite engine, and the
production engine (NATS JetStream + PostgreSQL). :func:`open_engine` picks one from a URL.

==========================================  ==============================================
URL                                         engine
==========================================  ==============================================
``memory``                                  SQLite in memory (tests)
``sqlite:///relative/or/abs.db``            SQLite file; ``sqlite:////abs/path.db`` also
``nats://host:4222`` + ``store=postgresql://...``   NATS JetStream for logs, PostgreSQL for state
==========================================  ==============================================
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from setpiece.engine.contract import (
    Assignment,
    Engine,
    EventAppend,
    GroupLog,
    KVRead,
    KVWrite,
    Log,
    OffsetCommit,
    Record,
    Store,
    StreamSpec,
    Timer,
    UnitOfWork,
    partition_for,
)
from setpiece.errors import ConfigError

__all__ = [
    "Assignment",
    "Engine",
    "EventAppend",
    "GroupLog",
    "KVRead",
    "KVWrite",
    "Log",
    "OffsetCommit",
    "Record",
    "Store",
    "StreamSpec",
    "Timer",
    "UnitOfWork",
    "open_engine",
    "partition_for",
]


async def open_engine(url: str, *, store: str | None = None) -> Engine:
    """Open the engine a URL names (see the table above)."""
    if url in ("memory", "sqlite://:memory:", "sqlite:///:memory:", ":memory:"):
        from setpiece.engine.sqlite import open_sqlite

        return open_sqlite(":memory:", {})
    if url.startswith("sqlite://"):
        from setpiece.engine.sqlite import open_sqlite

        rest = url[len("sqlite://") :]
        path, _, query = rest.partition("?")
        if not path.startswith("/") or len(path) < 2:
            raise ConfigError(
                f"engine URL {url!r}: write sqlite:///relative.db or sqlite:////absolute.db"
            )
        try:
            return open_sqlite(path[1:], dict(parse_qsl(query, keep_blank_values=True)))
        except ConfigError as exc:
            raise ConfigError(f"engine URL {url!r}: {exc}") from None
    scheme = urlsplit(url).scheme
    if scheme in ("nats", "tls"):
        if store is None:
            raise ConfigError(
                f"engine URL {url!r}: the NATS engine needs store='postgresql://...' "
                "(or SETPIECE_STORE) for state, inbox, outbox and timers"
            )
        try:
            from setpiece.engine.nats import open_nats  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:  # nats-py or asyncpg missing: the message says what to install
            raise ConfigError(f"engine URL {url!r}: {exc}") from None

        engine: Engine = await open_nats(url, store)
        return engine
    raise ConfigError(
        f"engine URL {url!r}: unknown scheme; use 'memory', 'sqlite:///file.db' or 'nats://host:port'"
    )
