"""How much one execution may do: the limits of :func:`execute` and of a durable :class:`Workflow`.

::

    from setpiece.workflows import WorkflowLimits, execute

    execute(definition, data, limits=WorkflowLimits(max_history_events=1_000))
    Workflow("approve", definition, limits=WorkflowLimits(expression_seconds=0.5))

The defaults follow Step Functions where it has a quota (25,000 history events per execution,
256 KiB of payload) and keep one execution from holding a process otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from setpiece.errors import ConfigError

__all__ = [
    "DEFAULT_LIMITS", "MAX_RETRY_DELAY", "LimitExceeded", "WorkflowLimits", "json_size_over",
]

#: The longest retry interval, in seconds (a year and a day: Step Functions' maximum
#: ``MaxDelaySeconds``, and longer than an execution can last).
MAX_RETRY_DELAY = 31_622_401.0


class LimitExceeded(Exception):
    """An expression or a built-in would go past a :class:`WorkflowLimits` bound."""


@dataclass(frozen=True, slots=True)
class WorkflowLimits:
    """Limits of one execution. Every field is checked when the object is built.

    * ``max_history_events`` — history events one execution may record (Step Functions: 25,000).
      The execution that reaches it fails with ``States.Runtime`` and a cause that says so.
    * ``expression_seconds`` — how long one JSONata expression may evaluate; past it, the
      state fails with ``States.QueryEvaluationError``.
    * ``max_value_size`` — the largest string (in characters) or array (in items) one JSONata
      expression or intrinsic function may build, checked before building it where the size is
      known in advance (ranges, padding, joins); past it, the state fails with
      ``States.QueryEvaluationError`` (JSONata) or ``States.IntrinsicFailure`` (intrinsics).
    * ``time_slice`` — (durable workflows) how long a runner steps an execution before it gives
      the event loop to other work (other executions, handlers, the HTTP gateway); ``0`` gives it
      back after every state.
    * ``step_budget`` — (durable workflows) how long one delivery steps one execution before
      it commits what it did and lets other executions' signals through.
    """

    max_history_events: int = 25_000
    expression_seconds: float = 1.0
    max_value_size: int = 256 * 1024
    time_slice: float = 0.005
    step_budget: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.max_history_events, bool) or not isinstance(
            self.max_history_events, int
        ) or self.max_history_events < 10:
            raise ConfigError("WorkflowLimits.max_history_events: must be an integer >= 10")
        if not _positive(self.expression_seconds):
            raise ConfigError("WorkflowLimits.expression_seconds: must be a number > 0")
        if isinstance(self.max_value_size, bool) or not isinstance(
            self.max_value_size, int
        ) or self.max_value_size < 1000:
            raise ConfigError("WorkflowLimits.max_value_size: must be an integer >= 1000")
        if not _positive(self.time_slice) and self.time_slice != 0:
            raise ConfigError("WorkflowLimits.time_slice: must be a number >= 0")
        if not _positive(self.step_budget):
            raise ConfigError("WorkflowLimits.step_budget: must be a number > 0")


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
    )


#: The limits used when none are given.
DEFAULT_LIMITS = WorkflowLimits()


def json_size_over(value: Any, limit: int) -> bool:
    """Would ``value`` take more than ``limit`` characters as compact JSON?

    Counts a lower bound of the size (strings and keys exactly, every other scalar as one
    character) and stops as soon as it passes ``limit``, so the cost is bounded by ``limit``
    even for a value that holds the same large object many times.
    """
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v) + 2
        elif isinstance(v, Mapping):
            total += 2 + len(v)
            if total > limit:
                return True
            for k, item in v.items():
                total += len(k) + 3 if isinstance(k, str) else 4
                stack.append(item)
        elif isinstance(v, list | tuple):
            total += 2 + len(v)
            if total > limit:
                return True
            stack.extend(v)
        else:
            total += 1
        if total > limit:
            return True
    return False
