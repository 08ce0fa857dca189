"""Every exception setpiece raises, in one tree.

::

    SetpieceError
    ├── EventError          (ValueError)  an event envelope is malformed or too large; names the field
    ├── PatternError        (ValueError)  an event pattern or input transformer is invalid; names the path
    ├── ConfigError         (ValueError)  a stack is declared wrongly: unknown target, duplicate name, ...
    ├── EngineError                       the engine cannot be used: unreachable, not a setpiece database
    │   └── ConflictError                 a transaction lost an optimistic-concurrency race (retried inside)
    ├── HandlerError                      a handler raised or returned something that is not an event
    │   └── HandlerTimeout  (TimeoutError) an attempt ran past the handler's timeout
    ├── DrainTimeout        (TimeoutError) ``Runtime.drain`` ran out of time with work still pending
    └── WorkflowError
        ├── DefinitionError (ValueError)  a state machine definition is invalid; names the state and field
        ├── TaskFailed                    a task failed with an ASL error name and cause
        ├── ExecutionDoesNotExist (LookupError)  no durable execution has that id
        ├── ExecutionAlreadyExists        an execution of that name exists with a different input
        └── TaskTokenError                a task token cannot be answered:
            ├── InvalidToken (ValueError)        not a token setpiece issued
            ├── TaskDoesNotExist (LookupError)   well formed, but no task ever had it
            └── TaskTimedOut                     the task stopped waiting: answered, timed out, or ended

Control signals are not errors and live apart, in :mod:`setpiece.signals`: a handler raises
``Retry`` to ask for a later attempt and ``Drop`` to acknowledge an event without handling it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "DefinitionError",
    "DrainTimeout",
    "EngineError",
    "EventError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "HandlerError",
    "HandlerTimeout",
    "InvalidToken",
    "PatternError",
    "SetpieceError",
    "TaskDoesNotExist",
    "TaskFailed",
    "TaskTimedOut",
    "TaskTokenError",
    "WorkflowError",
]


class SetpieceError(Exception):
    """The root of every exception setpiece raises on purpose."""


class EventError(SetpieceError, ValueError):
    """An event envelope is malformed or too large. The message names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PatternError(SetpieceError, ValueError):
    """An event pattern (or input transformer) is invalid. The message names the JSON path."""


class ConfigError(SetpieceError, ValueError):
    """A stack, service, bus or rule is declared wrongly."""


class EngineError(SetpieceError):
    """The engine cannot be used: unreachable, wrong URL, or not a setpiece database."""


class ConflictError(EngineError):
    """A transaction read a key that another transaction changed before it committed."""


class HandlerError(SetpieceError):
    """A handler failed: it raised, or returned something that is not an event."""


class HandlerTimeout(HandlerError, TimeoutError):
    """A handler's attempt ran past its ``timeout=`` (or ``RuntimeConfig.handler_timeout``).

    It counts as a failure: retried by the handler's policy, then dead-lettered with this error.
    """


class DrainTimeout(SetpieceError, TimeoutError):
    """``Runtime.drain`` ran out of time while work was still pending."""


class WorkflowError(SetpieceError):
    """Base of the workflow errors."""


class DefinitionError(WorkflowError, ValueError):
    """A state machine definition is invalid. The message names the state and the field."""


class TaskFailed(WorkflowError):
    """A task failed with an ASL error name (``States.TaskFailed`` or a custom one) and a cause."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class ExecutionDoesNotExist(WorkflowError, LookupError):
    """No durable workflow execution has that id."""


class ExecutionAlreadyExists(WorkflowError):
    """An execution of that name exists already, started with a different input."""


class TaskTokenError(WorkflowError):
    """A task token cannot be answered (AWS: InvalidToken, TaskDoesNotExist, TaskTimedOut)."""


class InvalidToken(TaskTokenError, ValueError):
    """The text is not a task token setpiece issued."""


class TaskDoesNotExist(TaskTokenError, LookupError):
    """The token is well formed, but no task of this engine ever waited for it."""


class TaskTimedOut(TaskTokenError):
    """The task no longer waits for its token: answered already, timed out, or its execution
    ended (succeeded, failed, aborted, or its Map/Parallel sibling failed)."""
