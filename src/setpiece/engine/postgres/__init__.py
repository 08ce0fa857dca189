"""PostgreSQL for the production engine's state: store, inbox, offsets, members, timers, outbox.

Used by :mod:`setpiece.engine.nats`; needs ``pip install 'setpiece[nats,postgres]'``.
"""

try:
    import asyncpg  # noqa: F401 - checked once here, before any module of this package
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the production engine needs asyncpg: pip install 'setpiece[nats,postgres]'"
    ) from exc

from setpiece.engine.postgres.store import PgStore

__all__ = ["PgStore"]
