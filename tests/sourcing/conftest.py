"""Engines for the event-sourcing tests: SQLite in memory, an SQLite file, and (marked
``servers``) NATS JetStream + PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import fresh_urls

ENGINES = [
    pytest.param("memory", id="memory"),
    pytest.param("file", id="sqlite-file"),
    pytest.param("nats", id="nats-pg", marks=pytest.mark.servers),
]
#: Engines that a second runtime (another writer) can open too.
SHARED_ENGINES = ENGINES[1:]


@pytest.fixture
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(engine URL, store URL) of the parametrized kind (see ENGINES)."""
    kind = getattr(request, "param", "memory")
    if kind == "memory":
        return "memory", None
    if kind == "file":
        return f"sqlite:///{tmp_path / 'es.db'}", None
    assert kind == "nats", kind
    return fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))
