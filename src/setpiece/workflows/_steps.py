"""The step core: what one state does, as pure functions of plain data.

A driver (the in-process :func:`~setpiece.workflows.execute`, later a durable runner) asks
:func:`enter` what a state does with its input, and gets an :data:`Action`:

* :class:`Transition` / :class:`Finish` — go to the next state / end the (sub-)machine, after
  assigning the given variables;
* :class:`Failure` — the (sub-)machine fails (a Fail state, or an error nothing caught);
* :class:`InvokeTask` — call a task, then report a :class:`TaskResult` or :class:`TaskError`
  to :func:`resume`;
* :class:`Sleep` — wait until a time (virtual or durable timer), then :func:`resume` with
  :class:`Woke`;
* :class:`RunBranches` — run child machines (Parallel branches, Map iterations) in child
  scopes, then :func:`resume` with :class:`BranchesDone`;
* :class:`Retry` — a Retrier matched: wait ``delay`` seconds, count the attempt, and
  :func:`enter` the same state again with the same input.

Nothing here mutates its arguments, touches a clock or calls a task: everything a step needs
is in :class:`StepInput`, so a durable runner can persist that (plus the pending action) and
resume after a crash.
"""
from __future__ import annotations

from setpiece.workflows._actions import (
    Action,
    Branch,
    BranchesDone,
    BranchOutcome,
    Failure,
    Finish,
    InvokeTask,
    Outcome,
    Retry,
    RunBranches,
    Sleep,
    StepInput,
    TaskError,
    TaskResult,
    Transition,
    Woke,
)
from setpiece.workflows._branching import enter_map, enter_parallel, map_done
from setpiece.workflows._errors import RUNTIME, StatesError
from setpiece.workflows._retry import handle_error
from setpiece.workflows._state_io import apply_input_path, complete, finish_plain, located_cause
from setpiece.workflows._states import (
    enter_choice,
    enter_fail,
    enter_pass,
    enter_succeed,
    enter_task,
    enter_wait,
)

__all__ = [
    "Action",
    "Branch",
    "BranchOutcome",
    "BranchesDone",
    "Failure",
    "Finish",
    "InvokeTask",
    "Outcome",
    "Retry",
    "RunBranches",
    "Sleep",
    "StepInput",
    "TaskError",
    "TaskResult",
    "Transition",
    "Woke",
    "enter",
    "resume",
]

# --------------------------------------------------------------------------------- public API


def enter(step: StepInput) -> Action:
    """Start (or, after a :class:`Retry`, restart) ``step.state`` with ``step.input``."""
    try:
        return _ENTER[step.state.type](step)
    except StatesError as e:
        return handle_error(step, e.error, located_cause(step, e))
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as e:
        return _unexpected(step, e)


def resume(step: StepInput, outcome: Outcome) -> Action:
    """Continue ``step.state`` once the task, timer or branches it asked for are done."""
    st = step.state
    if isinstance(outcome, TaskError):
        return handle_error(step, outcome.error, outcome.cause)
    try:
        if isinstance(outcome, TaskResult):
            return complete(step, outcome.result)
        if isinstance(outcome, Woke):
            return finish_plain(
                step, step.input if st.language == "JSONata" else apply_input_path(step)
            )
        if st.type == "Parallel":
            failed = next((o for o in outcome.outcomes if not o.ok), None)
            if failed is not None:
                return handle_error(step, failed.error, failed.cause)
            return complete(step, [o.output for o in outcome.outcomes])
        return map_done(step, outcome)
    except StatesError as e:
        return handle_error(step, e.error, located_cause(step, e))
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as e:
        return _unexpected(step, e)


def _unexpected(step: StepInput, e: Exception) -> Action:
    """Data the definition cannot handle (a wait of 10**20 seconds, ...) is a runtime error."""
    return Failure(RUNTIME, located_cause(step, StatesError(RUNTIME, f"{type(e).__name__}: {e}")))


_ENTER = {
    "Pass": enter_pass,
    "Task": enter_task,
    "Choice": enter_choice,
    "Wait": enter_wait,
    "Succeed": enter_succeed,
    "Fail": enter_fail,
    "Parallel": enter_parallel,
    "Map": enter_map,
}
