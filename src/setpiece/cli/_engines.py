"""How a command reaches the engine: load the stack, open its engine, run one coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from setpiece.cli._common import engine_url, load_stack, open_existing, store_url
from setpiece.engine.contract import Engine

__all__ = ["run_async", "with_engine"]

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_engine(
    target: str, engine: str | None, store: str | None,
    body: Callable[[Any, Engine], Awaitable[T]], *, existing: bool = True,
) -> T:
    """Load the stack, open its engine (which must exist when only looking), run ``body``."""
    from setpiece.engine import open_engine

    stack = load_stack(target)
    url = engine_url(stack.name, engine)
    db = await (open_existing(url, store_url(store)) if existing
                else open_engine(url, store=store_url(store)))
    try:
        return await body(stack, db)
    finally:
        await db.close()
