"""Errors in a state: Retriers (with their capped, overflow-free backoff) and Catchers."""

from __future__ import annotations

import random
from typing import Any

from setpiece.policy import RetryPolicy
from setpiece.workflows._actions import Action, Failure, Retry, StepInput, Transition
from setpiece.workflows._definition import Catcher
from setpiece.workflows._errors import StatesError, matches
from setpiece.workflows._limits import MAX_RETRY_DELAY
from setpiece.workflows._state_io import (
    apply_result_path,
    assign_jsonpath,
    jsonata_bindings,
    located_cause,
    query,
)

__all__ = ["error_output", "handle_error", "retry_delay"]


def handle_error(step: StepInput, error: str | None, cause: str | None) -> Action:
    """Retry the state, catch the error, or fail with it."""
    st = step.state
    for i, r in enumerate(st.retriers):
        if matches(r.error_equals, error):
            used = step.attempts[i] if i < len(step.attempts) else 0
            if used >= r.max_attempts:
                break
            delay = retry_delay(r.interval_seconds, r.backoff_rate, used, r.max_delay_seconds)
            if r.jitter == "FULL":
                delay = random.uniform(0, delay)
            return Retry(i, delay)
    for c in st.catchers:
        if matches(c.error_equals, error):
            return _catch(step, c, error, cause)
    return Failure(error, cause)


def retry_delay(
    interval: float, backoff_rate: float, used: int, max_delay: float | None
) -> float:
    """``interval * backoff_rate ** used``, capped by ``max_delay`` and by
    :data:`~setpiece.workflows._limits.MAX_RETRY_DELAY`, without overflowing for any ``used``
    (the arithmetic of :class:`~setpiece.RetryPolicy`, with the Retrier's fields)."""
    cap = MAX_RETRY_DELAY if max_delay is None else min(max_delay, MAX_RETRY_DELAY)
    if interval <= 0:
        return 0.0
    policy = RetryPolicy(initial_delay=interval, max_delay=cap, multiplier=backoff_rate, jitter=0)
    return policy.delay(used + 1)


def error_output(error: str | None, cause: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"Error": error}
    if cause is not None:
        out["Cause"] = cause
    return out


def _catch(step: StepInput, c: Catcher, error: str | None, cause: str | None) -> Action:
    err_out = error_output(error, cause)
    try:
        if step.state.language == "JSONata":
            b = jsonata_bindings(step, errorOutput=err_out)
            assign = query(step, c.assign, b, "Assign") if c.assign is not None else None
            output = query(step, c.output, b, "Output") if c.has_output else err_out
        else:
            assign = assign_jsonpath(step, c.assign, err_out) if c.assign is not None else None
            if c.has_result_path:
                output = apply_result_path(step, step.input, err_out, c.result_path, True)
            else:
                output = err_out
    except StatesError as e:
        return Failure(e.error, located_cause(step, e))
    return Transition(c.next, output, assign)

