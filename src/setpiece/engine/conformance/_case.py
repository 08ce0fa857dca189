"""The base of the conformance suite: :class:`EngineTestCase` (engine factories and the
coroutine runner), the :func:`engine_test` and :func:`peer_test` decorators, and the helpers the
rungs share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from setpiece.engine.contract import Engine

__all__ = ["PROMPT", "SESSION", "EngineTestCase", "engine_test", "peer_test"]

# Bounds for "this happens promptly": generous, so a loaded CI machine never flakes. A correct
# engine takes milliseconds; a broken one (no wake-up at all) takes the full bound.
PROMPT = 5.0
# A session timeout short enough to sleep past in a test.
SESSION = 0.3


_Case = TypeVar("_Case", bound="EngineTestCase")
_Body = Callable[[Engine], Awaitable[None]]
_PairBody = Callable[[Engine, Engine], Awaitable[None]]


class EngineTestCase:
    """The base of every conformance class: engine factories and the coroutine runner."""

    #: Seconds one test may take before it fails (a hung engine must not hang the suite).
    test_timeout: float = 60.0

    async def make_engine(self) -> Engine:
        """A new engine on fresh, empty storage. Subclasses must provide it."""
        raise NotImplementedError(f"{type(self).__name__} must define make_engine()")

    async def make_peer_engine(self, engine: Engine) -> Engine | None:
        """A second instance on the same storage as ``engine``, as another process would open
        it; None (the default) skips the cross-instance tests."""
        return None

    def run(self, body: _Body) -> None:
        """Open a fresh engine, run ``body(engine)`` on a new event loop, close the engine."""

        async def main() -> None:
            engine = await self.make_engine()
            try:
                async with asyncio.timeout(self.test_timeout):
                    await body(engine)
            finally:
                await engine.close()

        asyncio.run(main())

    def run_pair(self, body: _PairBody) -> None:
        """Like :meth:`run` with two instances on one storage; skips without a peer."""

        async def main() -> None:
            engine = await self.make_engine()
            try:
                peer = await self.make_peer_engine(engine)
                if peer is None:
                    pytest.skip(f"{type(self).__name__}: no second instance on the same storage")
                try:
                    async with asyncio.timeout(self.test_timeout):
                        await body(engine, peer)
                finally:
                    await peer.close()
            finally:
                await engine.close()

        asyncio.run(main())


def _sync_test(fn: Callable[..., Any], test: Callable[[Any], None]) -> Callable[[Any], None]:
    # No functools.wraps: pytest would follow __wrapped__ and ask for an ``engine`` fixture.
    test.__name__ = fn.__name__
    test.__qualname__ = fn.__qualname__
    test.__doc__ = fn.__doc__
    test.__module__ = fn.__module__
    return test


def engine_test(
    fn: Callable[[_Case, Engine], Coroutine[Any, Any, None]],
) -> Callable[[_Case], None]:
    """Turn ``async def test_x(self, engine)`` into a plain pytest test run by :meth:`run`."""

    def test(self: _Case) -> None:
        self.run(lambda engine: fn(self, engine))

    return _sync_test(fn, test)


def peer_test(
    fn: Callable[[_Case, Engine, Engine], Coroutine[Any, Any, None]],
) -> Callable[[_Case], None]:
    """Turn ``async def test_x(self, engine, peer)`` into a test run by :meth:`run_pair`."""

    def test(self: _Case) -> None:
        self.run_pair(lambda engine, peer: fn(self, engine, peer))

    return _sync_test(fn, test)


async def _promptly(aw: Awaitable[Any], what: str, bound: float = PROMPT) -> Any:
    """Await ``aw``; fail the test (not hang it) if it takes longer than ``bound`` seconds."""
    try:
        async with asyncio.timeout(bound):
            return await aw
    except TimeoutError:
        raise AssertionError(f"{what}: did not happen within {bound} s") from None


async def _read_all(engine: Engine, stream: str, partition: int, page: int = 1000) -> list[Any]:
    records: list[Any] = []
    offset = (await engine.start_offsets(stream))[partition]
    while True:
        batch = await engine.read(stream, partition, offset, page)
        if not batch:
            return records
        records.extend(batch)
        offset = batch[-1].offset + 1


def _check_assignment(owned: dict[str, tuple[int, ...]], partitions: int) -> None:
    """Every partition owned by exactly one member; sizes differ by at most one."""
    flat = [p for ps in owned.values() for p in ps]
    assert sorted(flat) == list(range(partitions)), f"each partition owned once: {owned}"
    sizes = [len(ps) for ps in owned.values()]
    assert max(sizes) - min(sizes) <= 1, f"partitions spread evenly: {owned}"
