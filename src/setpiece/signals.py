"""Control signals a handler raises to steer its delivery. They are not errors.

* :class:`Retry` — try this delivery again later (after ``delay`` seconds, or the policy's delay).
  It counts as an attempt; when attempts run out the event is dead-lettered.
* :class:`Drop` — acknowledge the event without handling it; nothing the handler did is kept.
"""

from __future__ import annotations

__all__ = ["ControlSignal", "Drop", "Retry"]


class ControlSignal(Exception):
    """Base of the control signals."""


class Retry(ControlSignal):
    """Ask for another attempt of this delivery."""

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Drop(ControlSignal):
    """Acknowledge the event without handling it."""

    def __init__(self, reason: str = "dropped by handler") -> None:
        super().__init__(reason)
