"""Fixtures of the rollout tests: an engine URL per kind (SQLite in memory, an SQLite file,
NATS JetStream + PostgreSQL under the ``servers`` marker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import fresh_urls

# Parametrize ``where`` with these (``indirect=True``).
LOCAL = [pytest.param("memory", id="memory"), pytest.param("file", id="sqlite-file")]
ALL = [*LOCAL, pytest.param("nats", id="nats-pg", marks=pytest.mark.servers)]


@pytest.fixture
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(engine URL, store URL) of the kind the test is parametrized with."""
    kind = getattr(request, "param", "memory")
    if kind == "memory":
        return "memory", None
    if kind == "file":
        return f"sqlite:///{tmp_path}/versions.db", None
    assert kind == "nats", kind
    return fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))
