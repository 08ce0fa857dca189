"""Amazon States Language workflows, interpreted in-process with Step Functions' semantics.

::

    from setpiece.workflows import execute

    ex = execute(definition, {"order": 42}, tasks=lambda state, payload: {...})
    ex.status, ex.output, ex.error, ex.cause, ex.history

:func:`validate` checks a definition (and returns the compiled :class:`StateMachine`, which
:func:`execute` also accepts). See ``docs/workflows.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from setpiece.errors import DefinitionError, TaskFailed, WorkflowError
from setpiece.workflows._definition import StateMachine, load
from setpiece.workflows._interpreter import Execution, HistoryEvent, TaskCallable, execute

__all__ = [
    "DefinitionError",
    "Execution",
    "HistoryEvent",
    "StateMachine",
    "TaskCallable",
    "TaskFailed",
    "WorkflowError",
    "execute",
    "validate",
]


def validate(definition: Mapping[str, Any] | str | bytes) -> StateMachine:
    """Validate an ASL definition (a dict or JSON text).

    Returns the compiled :class:`StateMachine`; raises :class:`DefinitionError` whose message
    names the state and the field, e.g.
    ``States.Choose.Choices[0]: Variable must be a JSONPath starting with "$"``.
    """
    return load(definition)
