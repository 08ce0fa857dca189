"""Backoff between attempts while a server is unreachable: 20 ms doubling to 0.5 s, within a
budget of seconds. Used by every call of the production engine that retries."""

from __future__ import annotations

import asyncio
import time

__all__ = ["Backoff"]


class Backoff:
    """``while True: try ... except Unreachable: if not await backoff.pause(): raise``."""

    def __init__(self, budget: float, *, first: float = 0.02, cap: float = 0.5) -> None:
        self._deadline = time.monotonic() + budget
        self._delay = first
        self._cap = cap

    async def pause(self) -> bool:
        """Sleep before the next attempt; False (at once) when the budget would run out."""
        if time.monotonic() + self._delay > self._deadline:
            return False
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._cap)
        return True
