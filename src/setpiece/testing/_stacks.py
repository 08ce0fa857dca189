"""``setpiece_stack``: start ephemeral stacks inside a test, stopped when the test ends."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from setpiece.testing._engines import EngineUrls
from setpiece.testing._http import FakeHttp

if TYPE_CHECKING:
    from setpiece.runtime.config import RuntimeConfig
    from setpiece.runtime.runtime import Runtime
    from setpiece.stack import Stack

__all__ = ["StackStarter"]


class StackStarter:
    """Starts stacks on the test's engine: ``rt = await setpiece_stack(stack)`` (stopped when
    the test ends) or ``async with setpiece_stack(stack) as rt:`` (stopped at the block's end).

    Every stack a test starts runs on the same storage (on ``memory``, each gets its own), with
    the test's fake HTTP (``setpiece_http``) and clock (``clock``) when the test uses them.
    """

    def __init__(self, urls: EngineUrls, *, http: FakeHttp | None = None,
                 clock: Any = None) -> None:
        self.urls = urls
        self.http = http
        self.clock = clock
        # (context manager, runtime) of the stacks started and not stopped
        self._running: list[tuple[Any, Runtime]] = []

    def __call__(self, stack: Stack, *, config: RuntimeConfig | None = None) -> _Start:
        return _Start(self, stack, config)

    async def start(self, stack: Stack, config: RuntimeConfig | None = None) -> Runtime:
        """Start ``stack`` (prefer ``await setpiece_stack(stack)``), stopped by :meth:`aclose`."""
        options: dict[str, Any] = {"store": self.urls.store, "config": config}
        if self.clock is not None:
            options["clock"] = self.clock
        started = stack.start(self.urls.engine, **options)
        runtime = await started.__aenter__()
        self._running.append((started, runtime))
        if self.http is not None:
            runtime.use_http_client(self.http.client())
        return runtime

    async def stop(self, runtime: Runtime) -> None:
        """Stop one stack this starter started (others keep running)."""
        for pair in self._running:
            started, running = pair
            if running is runtime:
                self._running.remove(pair)
                await started.__aexit__(None, None, None)
                return
        raise ValueError("setpiece_stack.stop: not a runtime this test started (or stopped)")

    @property
    def running(self) -> int:
        """How many stacks are started and not stopped."""
        return len(self._running)

    async def aclose(self) -> None:
        """Stop every stack still running, the last started first."""
        errors: list[BaseException] = []
        while self._running:
            started, _ = self._running.pop()
            try:
                await started.__aexit__(None, None, None)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


class _Start:
    """What ``setpiece_stack(stack)`` returns: await it, or use it with ``async with``."""

    def __init__(self, starter: StackStarter, stack: Stack, config: RuntimeConfig | None) -> None:
        self._starter, self._stack, self._config = starter, stack, config
        self._runtime: Runtime | None = None

    def __await__(self) -> Generator[Any, None, Runtime]:
        return self._starter.start(self._stack, self._config).__await__()

    async def __aenter__(self) -> Runtime:
        self._runtime = await self._starter.start(self._stack, self._config)
        return self._runtime

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            await self._starter.stop(runtime)
