"""The backoff of the production engine's calls while a server is unreachable: 20 ms doubling
to 0.5 s, no jitter, within a budget of seconds (the engine's ``timeout``)::

    backoff = UNREACHABLE.backoff(budget)
    while True:
        try: ...
        except Unreachable:
            if not await backoff.pause():
                raise
"""

from __future__ import annotations

import sys

from setpiece.policy import RetryPolicy

__all__ = ["UNREACHABLE"]

UNREACHABLE = RetryPolicy(
    max_attempts=sys.maxsize,  # bounded by the budget, not by a count
    initial_delay=0.02,
    max_delay=0.5,
    jitter=0,
)
