"""What a step asks its driver to do (actions), what the driver reports back (outcomes), and
the :class:`StepInput` a step reads: the plain data between :mod:`~setpiece.workflows._steps`
and a driver."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from setpiece.workflows._context import ExecutionInfo, Scope, format_time
from setpiece.workflows._definition import State, StateMachine
from setpiece.workflows._limits import DEFAULT_LIMITS, WorkflowLimits

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
]

# ------------------------------------------------------------------------------------ actions


@dataclass(slots=True)
class Transition:
    next: str
    output: Any
    assign: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Finish:
    output: Any
    assign: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    error: str | None
    cause: str | None


@dataclass(frozen=True, slots=True)
class InvokeTask:
    resource: str
    input: Any
    timeout_seconds: float | None
    heartbeat_seconds: float | None
    task_token: str | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    until: _dt.datetime


@dataclass(slots=True)
class Branch:
    """One child machine to run: a Parallel branch or a Map iteration (``index`` set)."""

    machine: StateMachine
    input: Any
    index: int | None = None


@dataclass(frozen=True, slots=True)
class RunBranches:
    kind: str  # "Parallel" or "Map"
    branches: tuple[Branch, ...]
    max_concurrency: int = 0
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    retrier: int
    delay: float


Action = Transition | Finish | Failure | InvokeTask | Sleep | RunBranches | Retry

# ----------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class TaskResult:
    result: Any


@dataclass(frozen=True, slots=True)
class TaskError:
    error: str | None
    cause: str | None


@dataclass(frozen=True, slots=True)
class Woke:
    pass


@dataclass(slots=True)
class BranchOutcome:
    ok: bool
    output: Any = None
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class BranchesDone:
    """The outcomes of the branches that ran, in order. A driver may stop early (after the
    first failure of a Parallel, or once a Map's failure tolerance is exceeded), so ``total``
    says how many branches there were."""

    outcomes: tuple[BranchOutcome, ...]
    total: int


Outcome = TaskResult | TaskError | Woke | BranchesDone


@dataclass(slots=True)
class StepInput:
    """Everything a step needs besides the definition: persist this to resume a state."""

    info: ExecutionInfo
    state: State
    input: Any
    scope: Scope
    entered: _dt.datetime
    entered_event_id: int
    now: _dt.datetime
    retry_count: int = 0
    attempts: tuple[int, ...] = ()
    task_token: str | None = None
    map_item: tuple[int, Any] | None = field(default=None)
    limits: WorkflowLimits = DEFAULT_LIMITS

    def context(self, map_item: tuple[int, Any] | None = None) -> dict[str, Any]:
        return self.info.context(
            state=self.state.name,
            entered=format_time(self.entered),
            retry_count=self.retry_count,
            map_item=map_item,
            task_token=self.task_token,
        )

