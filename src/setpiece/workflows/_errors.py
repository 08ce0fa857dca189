"""ASL error names and the internal signal a state raises when it fails.

``StatesError`` never leaves the interpreter: the step core turns it into a retry, a catch or a
failed execution. The public exceptions (``TaskFailed``, ``DefinitionError``) live in
:mod:`setpiece.errors`.
"""

from __future__ import annotations

ALL = "States.ALL"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
BRANCH_FAILED = "States.BranchFailed"
ITEM_READER_FAILED = "States.ItemReaderFailed"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
TASK_FAILED = "States.TaskFailed"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"

#: Errors that no Retry or Catch handles, even when named explicitly.
UNCATCHABLE = frozenset({RUNTIME})
#: Errors that the ``States.ALL`` wildcard does not match (they can still be named explicitly).
NOT_WILDCARDED = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


class StatesError(Exception):
    """A state failed with an ASL error name and a cause (internal to the interpreter)."""

    def __init__(self, error: str | None, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else (error or ""))
        self.error = error
        self.cause = cause


def matches(error_equals: tuple[str, ...], error: str | None) -> bool:
    """Does a Retrier's or Catcher's ``ErrorEquals`` match ``error``?

    ``States.Runtime`` is never matched. ``States.ALL`` matches every other error except
    ``States.DataLimitExceeded``; ``States.TaskFailed`` is a wildcard for every error except
    ``States.Timeout`` (as AWS documents it).
    """
    if error is None:
        error = ""
    if error in UNCATCHABLE:
        return False
    for name in error_equals:
        if name == error:
            return True
        if error in NOT_WILDCARDED:
            continue
        if name == ALL or (name == TASK_FAILED and error != TIMEOUT):
            return True
    return False
