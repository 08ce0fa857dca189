"""Circuit breakers of a run: one per (edge, instance) pair that has failed at least once.

The states and rules are the gateway's (:class:`~setpiece.http.BreakerPolicy`): consecutive
failures or a failure rate over the last ``window`` calls open a breaker; after the cool-down
one probe goes through (half-open); its success closes the breaker, its failure opens it again.
A pair that never failed has no breaker at all, so a healthy run keeps none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from setpiece.http import BreakerPolicy

__all__ = ["Breaker", "Breakers"]

CLOSED, OPEN, HALF_OPEN = 0, 1, 2


class Breaker:
    """The breaker of one instance as seen by one edge."""

    __slots__ = ("consecutive", "opened_at", "probing", "recent", "state")

    def __init__(self, window: int) -> None:
        self.state = CLOSED
        self.consecutive = 0
        self.recent: deque[bool] = deque(maxlen=window)
        self.opened_at = 0.0
        self.probing = False


class Breakers:
    """The breakers of every edge. ``tables[e]``: the breakers of edge ``e`` by instance;
    ``open[e]``: how many of them are open or half-open (0 on the fast path: nothing to ask)."""

    __slots__ = ("open", "policy", "tables")

    def __init__(self, policy: BreakerPolicy, edges: int) -> None:
        self.policy = policy
        self.tables: list[dict[int, Breaker]] = [{} for _ in range(edges)]
        self.open = [0] * edges

    def allow(self, br: Breaker, now: float) -> bool:
        """Whether a call may go through ``br`` at ``now`` (an open one after its cool-down
        lets one probe through)."""
        if br.state == CLOSED:
            return True
        if br.state == OPEN:
            if now - br.opened_at < self.policy.cooldown:
                return False
            br.state = HALF_OPEN
            br.probing = False
        if br.probing:
            return False
        br.probing = True
        return True

    def choose(self, e: int, inst: int, listed: list[int], region: list[int], now: float,
               rnd: Callable[[], float]) -> int:
        """An instance for a call of edge ``e`` whose breaker lets it through: ``inst`` (drawn
        from ``listed``), or up to four more draws from ``listed``, or the first of the region's
        ``region`` that does. When none does: ``inst`` if so many breakers are open that the
        policy panics (the calls spread over all of them), else -2 (every instance ejected)."""
        table = self.tables[e]
        for _ in range(4):
            br = table.get(inst)
            if br is None or self.allow(br, now):
                return inst
            inst = listed[int(rnd() * len(listed))]
        for cand in region:
            br = table.get(cand)
            if br is None or self.allow(br, now):
                return cand
        if self.open[e] / len(region) > 1.0 - self.policy.panic_threshold:
            return inst  # panic: spread over all of them
        return -2

    def record(self, e: int, inst: int, ok: bool, now: float) -> None:
        """The outcome of a call of edge ``e`` to instance ``inst``."""
        table = self.tables[e]
        br = table.get(inst)
        policy = self.policy
        if br is None:
            if ok:
                return
            br = table[inst] = Breaker(policy.window)
        if br.state == HALF_OPEN:
            br.probing = False
            if ok:
                br.state = CLOSED
                br.consecutive = 0
                br.recent.clear()
                self.open[e] -= 1
            else:
                br.state = OPEN
                br.opened_at = now
            return
        br.recent.append(ok)
        if ok:
            br.consecutive = 0
            return
        br.consecutive += 1
        if br.state == CLOSED:
            recent = br.recent
            if br.consecutive >= policy.failures or (
                    len(recent) >= policy.min_calls
                    and recent.count(False) / len(recent) >= policy.failure_rate):
                br.state = OPEN
                br.opened_at = now
                self.open[e] += 1
