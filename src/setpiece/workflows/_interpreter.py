"""The in-process driver: runs the step core to completion on a virtual clock.

Wait states and retry intervals advance the virtual clock instead of sleeping; a task call
advances it by the wall time the call really took (so ``TimeoutSeconds`` works). Parallel
branches and Map iterations run one after the other, each in a child variable scope, driven
by the same loop.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from setpiece.errors import TaskFailed
from setpiece.workflows import _steps
from setpiece.workflows._context import ExecutionInfo, Scope, format_time
from setpiece.workflows._definition import State, StateMachine, load
from setpiece.workflows._errors import (
    DATA_LIMIT_EXCEEDED,
    HEARTBEAT_TIMEOUT,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
)
from setpiece.workflows._limits import DEFAULT_LIMITS, WorkflowLimits

__all__ = ["Execution", "HistoryEvent", "TaskCallable", "execute"]

TaskCallable = Callable[[str, Any], Any]

#: Step Functions' payload limit: 256 KiB of UTF-8 JSON.
PAYLOAD_LIMIT = 256 * 1024

_REGION_ACCOUNT = "us-east-1:123456789012"


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One entry of an execution's history, like Step Functions' ``GetExecutionHistory``.

    ``type`` is the AWS event type (``ExecutionStarted``, ``TaskStateEntered``,
    ``TaskScheduled``, ``MapIterationStarted``, ...); ``timestamp`` is on the virtual clock;
    ``details`` holds the state name, input/output or error/cause as applicable.
    """

    id: int
    type: str
    timestamp: _dt.datetime
    details: Mapping[str, Any] = field(default_factory=dict)


# The driver records (type, timestamp, details) tuples; Execution.history builds the
# HistoryEvent objects the first time it is read.
_Raw = tuple[str, _dt.datetime, dict[str, Any]]


class Execution:
    """The result of :func:`execute`."""

    __slots__ = (
        "_events",
        "_history",
        "cause",
        "error",
        "execution_arn",
        "name",
        "output",
        "start_date",
        "status",
        "stop_date",
    )

    def __init__(
        self,
        status: str,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
        *,
        name: str = "",
        execution_arn: str = "",
        start_date: _dt.datetime | None = None,
        stop_date: _dt.datetime | None = None,
        events: list[_Raw] | None = None,
    ) -> None:
        self.status = status  #: SUCCEEDED, FAILED, TIMED_OUT or ABORTED
        self.output = output
        self.error = error
        self.cause = cause
        self.name = name
        self.execution_arn = execution_arn
        self.start_date = start_date
        self.stop_date = stop_date
        self._events = events if events is not None else []
        self._history: list[HistoryEvent] | None = None

    @property
    def history(self) -> list[HistoryEvent]:
        """The execution's events, oldest first (ids start at 1)."""
        if self._history is None:
            self._history = [
                HistoryEvent(i, t, ts, d) for i, (t, ts, d) in enumerate(self._events, 1)
            ]
        return self._history

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def __repr__(self) -> str:
        return (
            f"Execution(status={self.status!r}, output={self.output!r}, error={self.error!r}, "
            f"cause={self.cause!r})"
        )


class _TimedOut(Exception):
    pass


class _Stopped(Exception):
    """The execution must end now: a limit was reached (its error and cause)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error = error
        self.cause = cause


def history_limit_cause(limit: int) -> str:
    """The cause of the failure of an execution that reached its history limit."""
    return (
        f"The execution reached the limit of {limit} history events "
        "(WorkflowLimits.max_history_events); a loop that never ends, or an execution that "
        "should continue as a new one."
    )


def step_crash_cause(e: BaseException) -> str:
    """The cause of the failure of an execution whose step raised what no state handles."""
    return f"A step failed unexpectedly: {type(e).__name__}: {e}"[:32768]


class _Driver:
    def __init__(
        self,
        info: ExecutionInfo,
        tasks: TaskCallable | None,
        start: _dt.datetime,
        deadline: _dt.datetime | None,
        limits: WorkflowLimits = DEFAULT_LIMITS,
    ) -> None:
        self.info = info
        self.tasks = tasks
        self.now = start
        self.deadline = deadline
        self.limits = limits
        # room for the events a state adds after the check and for ExecutionFailed
        self.max_events = limits.max_history_events - 1
        self.events: list[_Raw] = []

    # -- clock & history ------------------------------------------------------------------
    def event(self, type_: str, **details: Any) -> int:
        if len(self.events) >= self.max_events and not type_.startswith("Execution"):
            raise _Stopped(RUNTIME, history_limit_cause(self.limits.max_history_events))
        self.events.append((type_, self.now, details))
        return len(self.events)

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep_until(self.now + _dt.timedelta(seconds=seconds))

    def sleep_until(self, until: _dt.datetime) -> None:
        if self.deadline is not None and until > self.deadline:
            self.now = max(self.now, self.deadline)
            raise _TimedOut
        if until > self.now:
            self.now = until

    # -- machines -------------------------------------------------------------------------
    def run(self, machine: StateMachine, data: Any, scope: Scope) -> _steps.BranchOutcome:
        """Drive one (sub-)machine from its StartAt to its end."""
        events = self.events
        append = events.append
        info = self.info
        enter, resume = _steps.enter, _steps.resume
        Transition, Finish = _steps.Transition, _steps.Finish
        st = machine.states[machine.start_at]
        states = machine.states
        limits = self.limits
        max_events = self.max_events
        while True:
            if len(events) >= max_events:
                raise _Stopped(RUNTIME, history_limit_cause(limits.max_history_events))
            append((st.entered_event, self.now, {"name": st.name, "input": data}))
            token = str(uuid.uuid4()) if st.uses_task_token else None
            step = _steps.StepInput(
                info, st, data, scope, self.now, len(events), self.now, 0, (), token,
                limits=limits,
            )
            action = enter(step)
            while True:
                if isinstance(action, Transition):
                    if action.assign:
                        scope.assign(dict(action.assign))
                    data = action.output
                    if len(events) >= max_events:
                        raise _Stopped(RUNTIME, history_limit_cause(limits.max_history_events))
                    append((st.exited_event, self.now, {"name": st.name, "output": data}))
                    st = states[action.next]
                    break
                if isinstance(action, Finish):
                    if action.assign:
                        scope.assign(dict(action.assign))
                    data = action.output
                    if len(events) >= max_events:
                        raise _Stopped(RUNTIME, history_limit_cause(limits.max_history_events))
                    append((st.exited_event, self.now, {"name": st.name, "output": data}))
                    return _steps.BranchOutcome(True, data)
                if isinstance(action, _steps.Failure):
                    return _steps.BranchOutcome(False, None, action.error, action.cause)
                if isinstance(action, _steps.InvokeTask):
                    outcome: _steps.Outcome = self.invoke(st, action)
                elif isinstance(action, _steps.Sleep):
                    self.sleep_until(action.until)
                    outcome = _steps.Woke()
                elif isinstance(action, _steps.RunBranches):
                    outcome = self.branches(st, action, scope)
                else:
                    assert isinstance(action, _steps.Retry)
                    if len(events) >= max_events:
                        raise _Stopped(RUNTIME, history_limit_cause(limits.max_history_events))
                    self.advance(action.delay)
                    attempts = list(step.attempts) + [0] * (len(st.retriers) - len(step.attempts))
                    attempts[action.retrier] += 1
                    step.now = self.now
                    step.retry_count += 1
                    step.attempts = tuple(attempts)
                    action = enter(step)
                    continue
                step.now = self.now
                action = resume(step, outcome)

    def branches(self, st: State, action: _steps.RunBranches, scope: Scope) -> _steps.BranchesDone:
        kind = action.kind
        total = len(action.branches)
        self.event(kind + "StateStarted", name=st.name, length=total)
        outcomes: list[_steps.BranchOutcome] = []
        failures = 0
        for br in action.branches:
            if kind == "Map":
                self.event("MapIterationStarted", name=st.name, index=br.index)
            outcome = self.run(br.machine, br.input, scope.child())
            outcomes.append(outcome)
            if kind == "Map":
                self.event(
                    "MapIterationSucceeded" if outcome.ok else "MapIterationFailed",
                    name=st.name,
                    index=br.index,
                )
            if not outcome.ok:
                failures += 1
                if not _tolerated(action, failures, total):
                    break
        ok = all(o.ok for o in outcomes)
        self.event(kind + ("StateSucceeded" if ok else "StateFailed"), name=st.name)
        return _steps.BranchesDone(tuple(outcomes), total)

    def invoke(self, st: State, action: _steps.InvokeTask) -> _steps.Outcome:
        self.event("TaskScheduled", name=st.name, resource=action.resource, parameters=action.input)
        self.event("TaskStarted", name=st.name)
        if self.tasks is None:
            return self.task_failed(
                st,
                TASK_FAILED,
                f"Task state '{st.name}' cannot run: execute() was called without tasks=, "
                "the callable that runs Task states",
            )
        try:
            payload = msgspec.json.decode(msgspec.json.encode(action.input))
        except (TypeError, msgspec.EncodeError) as e:  # pragma: no cover - inputs come from JSON
            return self.task_failed(st, TASK_FAILED, f"task input is not JSON: {e}")
        started = time.perf_counter()
        error: tuple[str | None, str | None] | None = None
        result: Any = None
        try:
            result = self.tasks(st.name, payload)
        except TaskFailed as e:
            error = (e.error, e.cause)
        except Exception as e:
            error = (TASK_FAILED, str(e) or type(e).__name__)
        elapsed = time.perf_counter() - started
        self.advance(elapsed)
        if action.heartbeat_seconds is not None and elapsed > action.heartbeat_seconds:
            self.event("TaskTimedOut", name=st.name, error=HEARTBEAT_TIMEOUT)
            return _steps.TaskError(HEARTBEAT_TIMEOUT, "")
        if action.timeout_seconds is not None and elapsed > action.timeout_seconds:
            self.event("TaskTimedOut", name=st.name, error=TIMEOUT)
            return _steps.TaskError(TIMEOUT, "")
        if error is not None:
            return self.task_failed(st, error[0], error[1])
        try:
            encoded = msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as e:
            return self.task_failed(
                st, TASK_FAILED, f"the task returned a value that is not JSON: {e}"
            )
        if len(encoded) > PAYLOAD_LIMIT:
            return self.task_failed(
                st,
                DATA_LIMIT_EXCEEDED,
                f"The state/task '{st.name}' returned a result with a size exceeding the maximum "
                f"number of bytes service limit ({len(encoded)} > {PAYLOAD_LIMIT}).",
            )
        result = msgspec.json.decode(encoded)
        self.event("TaskSucceeded", name=st.name, output=result)
        return _steps.TaskResult(result)

    def task_failed(self, st: State, error: str | None, cause: str | None) -> _steps.TaskError:
        self.event("TaskFailed", name=st.name, error=error, cause=cause)
        return _steps.TaskError(error, cause)


def _tolerated(action: _steps.RunBranches, failures: int, total: int) -> bool:
    if action.kind != "Map":
        return False
    count, pct = action.tolerated_failure_count, action.tolerated_failure_percentage
    if count is not None and failures <= count:
        return True
    return pct is not None and total > 0 and 100.0 * failures / total <= pct


def _now() -> _dt.datetime:
    t = _dt.datetime.now(_dt.UTC)
    return t.replace(microsecond=(t.microsecond // 1000) * 1000)


def execute(
    definition: Mapping[str, Any] | str | bytes | StateMachine,
    input: Any = None,
    *,
    tasks: TaskCallable | None = None,
    name: str | None = None,
    start_time: _dt.datetime | None = None,
    limits: WorkflowLimits | None = None,
) -> Execution:
    """Run a state machine to completion in-process and return its :class:`Execution`.

    ``definition`` is an ASL definition (a dict or JSON text; validated first, raising
    :class:`~setpiece.errors.DefinitionError`) or a :class:`StateMachine` from
    :func:`validate`. ``input`` is the execution input (``None`` means ``{}``).
    ``tasks(state_name, task_input)`` runs every Task state, also inside Map and Parallel; it
    returns the result or raises :class:`~setpiece.errors.TaskFailed` (any other exception is
    a ``States.TaskFailed`` whose cause is the exception's text).

    Nothing sleeps: Wait states and retry intervals move a virtual clock (starting at
    ``start_time``, default now), which also measures ``TimeoutSeconds``.

    ``limits`` (a :class:`~setpiece.workflows.WorkflowLimits`) bounds the execution: an
    execution that reaches ``max_history_events`` fails with ``States.Runtime``; a step that
    raises what no state can handle fails it with ``States.Runtime`` too (never an exception
    out of ``execute``).
    """
    machine = definition if isinstance(definition, StateMachine) else load(definition)
    if input is None:
        input = {}
    start = start_time if start_time is not None else _now()
    exec_name = name or str(uuid.uuid4())
    sm_name = "setpiece"
    info = ExecutionInfo(
        execution_arn=f"arn:aws:states:{_REGION_ACCOUNT}:execution:{sm_name}:{exec_name}",
        name=exec_name,
        input=input,
        start_time=format_time(start),
        state_machine_arn=f"arn:aws:states:{_REGION_ACCOUNT}:stateMachine:{sm_name}",
        state_machine_name=sm_name,
    )
    deadline = (
        start + _dt.timedelta(seconds=machine.timeout_seconds) if machine.timeout_seconds else None
    )
    driver = _Driver(info, tasks, start, deadline, limits or DEFAULT_LIMITS)
    driver.event("ExecutionStarted", input=input)
    ex = Execution(
        "RUNNING",
        name=exec_name,
        execution_arn=info.execution_arn,
        start_date=start,
        events=driver.events,
    )
    try:
        outcome = driver.run(machine, input, Scope())
    except _TimedOut:
        driver.event("ExecutionTimedOut", error=TIMEOUT)
        ex.status, ex.error, ex.cause = "TIMED_OUT", TIMEOUT, "The execution timed out."
    except _Stopped as e:
        ex.status, ex.error, ex.cause = "FAILED", e.error, e.cause
        driver.event("ExecutionFailed", error=e.error, cause=e.cause)
    except Exception as e:  # a step raised what no state handles: the execution fails
        ex.status, ex.error, ex.cause = "FAILED", RUNTIME, step_crash_cause(e)
        driver.event("ExecutionFailed", error=ex.error, cause=ex.cause)
    else:
        if outcome.ok:
            size = len(json.dumps(outcome.output, ensure_ascii=False).encode())
            if size > PAYLOAD_LIMIT:
                ex.status, ex.error = "FAILED", DATA_LIMIT_EXCEEDED
                ex.cause = (
                    "The state/task returned a result with a size exceeding the maximum number "
                    f"of bytes service limit ({size} > {PAYLOAD_LIMIT})."
                )
                driver.event("ExecutionFailed", error=ex.error, cause=ex.cause)
            else:
                ex.status, ex.output = "SUCCEEDED", outcome.output
                driver.event("ExecutionSucceeded", output=outcome.output)
        else:
            ex.status, ex.error, ex.cause = "FAILED", outcome.error, outcome.cause
            driver.event("ExecutionFailed", error=outcome.error, cause=outcome.cause)
    ex.stop_date = driver.now
    return ex
