"""PostgreSQL for the production engine's state: store, inbox, offsets, members, timers, outbox.

Used by :mod:`setpiece.engine.nats`; needs ``pip install 'setpiece[nats,postgres]'``.
"""

from setpiece.engine.postgres.store import PgStore

__all__ = ["PgStore"]
