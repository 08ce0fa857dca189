"""The production engine: NATS JetStream for logs, PostgreSQL for state.

URL ``nats://host:4222`` with ``store=postgresql://...``.
Needs ``pip install 'setpiece[nats,postgres]'``.
"""

from setpiece.engine.nats.engine import NatsEngine, open_nats

__all__ = ["NatsEngine", "open_nats"]
