"""Amazon States Language workflows: in-process (:func:`execute`) and durable (:class:`Workflow`).

::

    from setpiece.workflows import execute

    ex = execute(definition, {"order": 42}, tasks=lambda state, payload: {...})
    ex.status, ex.output, ex.error, ex.cause, ex.history

:func:`validate` checks a definition (and returns the compiled :class:`StateMachine`, which
:func:`execute` also accepts). A :class:`Workflow` declares a durable workflow of a stack; the
runtime runs it on the stack's engine (``rt.start_execution``, task tokens, listing). The same
operations exist as functions of an engine (``start_execution(engine, workflow, input)``,
``send_task_success(engine, token, output)``, ...) for tools that run no stack: the HTTP
gateway, the CLI. See ``docs/workflows.md``.

Names are imported on first use, so importing a submodule (as the runtime does) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from setpiece.errors import (
    DefinitionError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    InvalidToken,
    TaskDoesNotExist,
    TaskFailed,
    TaskTimedOut,
    TaskTokenError,
    WorkflowError,
)

if TYPE_CHECKING:
    from setpiece.workflows._definition import StateMachine
    from setpiece.workflows._interpreter import Execution, HistoryEvent, TaskCallable, execute
    from setpiece.workflows._limits import WorkflowLimits
    from setpiece.workflows._store import (
        ExecutionDescription,
        describe_execution,
        execution_history,
        list_executions,
        start_execution,
        stop_execution,
    )
    from setpiece.workflows._tokens import (
        send_task_failure,
        send_task_heartbeat,
        send_task_success,
    )
    from setpiece.workflows.workflow import Workflow

__all__ = [
    "DefinitionError",
    "Execution",
    "ExecutionAlreadyExists",
    "ExecutionDescription",
    "ExecutionDoesNotExist",
    "HistoryEvent",
    "InvalidToken",
    "StateMachine",
    "TaskCallable",
    "TaskDoesNotExist",
    "TaskFailed",
    "TaskTimedOut",
    "TaskTokenError",
    "Workflow",
    "WorkflowError",
    "WorkflowLimits",
    "describe_execution",
    "execute",
    "execution_history",
    "list_executions",
    "send_task_failure",
    "send_task_heartbeat",
    "send_task_success",
    "start_execution",
    "stop_execution",
    "validate",
]

_LAZY = {
    "StateMachine": "setpiece.workflows._definition",
    "Execution": "setpiece.workflows._interpreter",
    "HistoryEvent": "setpiece.workflows._interpreter",
    "TaskCallable": "setpiece.workflows._interpreter",
    "execute": "setpiece.workflows._interpreter",
    "ExecutionDescription": "setpiece.workflows._store",
    "Workflow": "setpiece.workflows.workflow",
    "WorkflowLimits": "setpiece.workflows._limits",
    # the same operations as the Runtime methods, on an engine (for the gateway and the CLI)
    "start_execution": "setpiece.workflows._store",
    "describe_execution": "setpiece.workflows._store",
    "list_executions": "setpiece.workflows._store",
    "execution_history": "setpiece.workflows._store",
    "stop_execution": "setpiece.workflows._store",
    "send_task_success": "setpiece.workflows._tokens",
    "send_task_failure": "setpiece.workflows._tokens",
    "send_task_heartbeat": "setpiece.workflows._tokens",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'setpiece.workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def validate(definition: Mapping[str, Any] | str | bytes) -> StateMachine:
    """Validate an ASL definition (a dict or JSON text).

    Returns the compiled :class:`StateMachine`; raises :class:`DefinitionError` whose message
    names the state and the field, e.g.
    ``States.Choose.Choices[0]: Variable must be a JSONPath starting with "$"``.
    """
    from setpiece.workflows._definition import load

    return load(definition)
