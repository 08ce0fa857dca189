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

import datetime as _dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from setpiece.policy import RetryPolicy
from setpiece.workflows import _jsonata as jsonata_
from setpiece.workflows._choice import evaluate_rule
from setpiece.workflows._context import ExecutionInfo, Scope, format_time, parse_time
from setpiece.workflows._definition import Catcher, State, StateMachine
from setpiece.workflows._errors import (
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    INTRINSIC_FAILURE,
    ITEM_READER_FAILED,
    NO_CHOICE_MATCHED,
    QUERY_EVALUATION_ERROR,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    StatesError,
    matches,
)
from setpiece.workflows._intrinsics import java_string, json_text
from setpiece.workflows._limits import DEFAULT_LIMITS, MAX_RETRY_DELAY, WorkflowLimits
from setpiece.workflows._paths import JsonPath, PathNotFound, compile_path, set_result_path
from setpiece.workflows._payload import Env, evaluate_template, resolve_path, resolve_value

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


# --------------------------------------------------------------------------------- public API


def enter(step: StepInput) -> Action:
    """Start (or, after a :class:`Retry`, restart) ``step.state`` with ``step.input``."""
    try:
        return _ENTER[step.state.type](step)
    except StatesError as e:
        return _handle_error(step, e.error, _located(step, e))
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as e:
        return _unexpected(step, e)


def resume(step: StepInput, outcome: Outcome) -> Action:
    """Continue ``step.state`` once the task, timer or branches it asked for are done."""
    st = step.state
    if isinstance(outcome, TaskError):
        return _handle_error(step, outcome.error, outcome.cause)
    try:
        if isinstance(outcome, TaskResult):
            return _complete(step, outcome.result)
        if isinstance(outcome, Woke):
            return _finish_plain(
                step, step.input if st.language == "JSONata" else _input_path(step)
            )
        if st.type == "Parallel":
            failed = next((o for o in outcome.outcomes if not o.ok), None)
            if failed is not None:
                return _handle_error(step, failed.error, failed.cause)
            return _complete(step, [o.output for o in outcome.outcomes])
        return _map_done(step, outcome)
    except StatesError as e:
        return _handle_error(step, e.error, _located(step, e))
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as e:
        return _unexpected(step, e)


def _unexpected(step: StepInput, e: Exception) -> Action:
    """Data the definition cannot handle (a wait of 10**20 seconds, ...) is a runtime error."""
    return Failure(RUNTIME, _located(step, StatesError(RUNTIME, f"{type(e).__name__}: {e}")))


# ---------------------------------------------------------------------------------- plumbing


_LOCATED = frozenset({RUNTIME, QUERY_EVALUATION_ERROR, INTRINSIC_FAILURE})


def _located(step: StepInput, e: StatesError) -> str | None:
    """Errors of the interpreter itself name the state, as Step Functions does."""
    if e.error not in _LOCATED:
        return e.cause
    return (
        f"An error occurred while executing the state '{step.state.name}' (entered at the event "
        f"id #{step.entered_event_id}). {e.cause}"
    )


def _env(step: StepInput, data: Any, map_item: tuple[int, Any] | None = None) -> Env:
    return Env(data, lambda: step.context(map_item), step.scope, step.limits.max_value_size)


def _bindings(step: StepInput, **states: Any) -> dict[str, Any]:
    b = step.scope.visible()
    states.setdefault("input", step.input)
    states.setdefault("context", step.context(states.pop("map_item", None)))
    b["states"] = states
    return b


def _input_path(step: StepInput) -> Any:
    st = step.state
    if not st.has_input_path:
        return step.input
    if st.input_path is None:
        return {}
    return _select(st.input_path, _env(step, step.input))


def _select(path: JsonPath, env: Env) -> Any:
    try:
        return resolve_path(path, env)
    except PathNotFound as e:
        raise StatesError(RUNTIME, f"Invalid path '{path.text}' : {e.message}") from None


def _output_path(step: StepInput, data: Any) -> Any:
    st = step.state
    if not st.has_output_path:
        return data
    if st.output_path is None:
        return {}
    return _select(st.output_path, _env(step, data))


def _result_path(
    step: StepInput, raw_input: Any, result: Any, path: JsonPath | None, present: bool
) -> Any:
    if not present:
        return result
    if path is None:
        return raw_input
    try:
        return set_result_path(raw_input, path, result)
    except ValueError:
        raise StatesError(
            RESULT_PATH_MATCH_FAILURE,
            f'Unable to apply ResultPath "{path.text}" to input "{json_text(raw_input)}"',
        ) from None


def _assign_jsonpath(step: StepInput, template: Any, data: Any) -> dict[str, Any]:
    assigned: dict[str, Any] = evaluate_template(template, _env(step, data))  # an object
    return assigned


def _jx(step: StepInput, template: Any, bindings: Mapping[str, Any], field: str) -> Any:
    return jsonata_.resolve(template, bindings, field, step.limits)


def _next(step: StepInput, output: Any, assign: Mapping[str, Any] | None) -> Action:
    st = step.state
    if st.end or st.next is None:
        return Finish(output, assign)
    return Transition(st.next, output, assign)


def _finish_plain(step: StepInput, effective: Any) -> Action:
    """End a Wait state (its output is its input, reshaped)."""
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step)
        assign = _jx(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = _jx(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return _next(step, output, assign)
    assign = _assign_jsonpath(step, st.get("Assign"), effective) if "Assign" in st else None
    return _next(step, _output_path(step, effective), assign)


def _complete(step: StepInput, result: Any) -> Action:
    """A Task, Parallel or Map produced ``result``: select, assign, place, output."""
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step, result=result)
        assign = _jx(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = _jx(step, st.get("Output"), b, "Output") if "Output" in st else result
        return _next(step, output, assign)
    if "ResultSelector" in st:
        result = evaluate_template(st.get("ResultSelector"), _env(step, result))
    assign = _assign_jsonpath(step, st.get("Assign"), result) if "Assign" in st else None
    data = _result_path(step, step.input, result, st.result_path, st.has_result_path)
    return _next(step, _output_path(step, data), assign)


# ------------------------------------------------------------------------------- retry/catch


def _handle_error(step: StepInput, error: str | None, cause: str | None) -> Action:
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


def _error_output(error: str | None, cause: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"Error": error}
    if cause is not None:
        out["Cause"] = cause
    return out


def _catch(step: StepInput, c: Catcher, error: str | None, cause: str | None) -> Action:
    err_out = _error_output(error, cause)
    try:
        if step.state.language == "JSONata":
            b = _bindings(step, errorOutput=err_out)
            assign = _jx(step, c.assign, b, "Assign") if c.assign is not None else None
            output = _jx(step, c.output, b, "Output") if c.has_output else err_out
        else:
            assign = _assign_jsonpath(step, c.assign, err_out) if c.assign is not None else None
            if c.has_result_path:
                output = _result_path(step, step.input, err_out, c.result_path, True)
            else:
                output = err_out
    except StatesError as e:
        return Failure(e.error, _located(step, e))
    return Transition(c.next, output, assign)


# ------------------------------------------------------------------------------- state types


def _enter_pass(step: StepInput) -> Action:
    st = step.state
    if st.passthrough:
        return _next(step, step.input, None)
    if st.language == "JSONata":
        b = _bindings(step)
        assign = _jx(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = _jx(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return _next(step, output, assign)
    effective = _input_path(step)
    if "Parameters" in st:
        effective = evaluate_template(st.get("Parameters"), _env(step, effective))
    result = st.get("Result") if "Result" in st else effective
    assign = _assign_jsonpath(step, st.get("Assign"), result) if "Assign" in st else None
    data = _result_path(step, step.input, result, st.result_path, st.has_result_path)
    return _next(step, _output_path(step, data), assign)


def _enter_succeed(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step)
        output = _jx(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return Finish(output)
    return Finish(_output_path(step, _input_path(step)))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def _enter_fail(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step)
        error = _jx(step, st.get("Error"), b, "Error") if "Error" in st else None
        cause = _jx(step, st.get("Cause"), b, "Cause") if "Cause" in st else None
        return Failure(
            None if error is None else _as_text(error), None if cause is None else _as_text(cause)
        )
    env = _env(step, step.input)
    error = st.get("Error")
    cause = st.get("Cause")
    if "ErrorPath" in st:
        error = _as_text(resolve_value(st.get("ErrorPath"), env, "ErrorPath"))
    if "CausePath" in st:
        cause = _as_text(resolve_value(st.get("CausePath"), env, "CausePath"))
    return Failure(error, cause)


def _enter_choice(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step)
        for i, rule in enumerate(st.get("Choices")):
            cond = rule["Condition"]
            value = _jx(step, cond, b, f"Choices[{i}].Condition") if isinstance(cond, str) else cond
            if not isinstance(value, bool):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"The Condition of Choices[{i}] must evaluate to a boolean, "
                    f"not {json_text(value)}",
                )
            if value:
                assign = (
                    _jx(step, rule["Assign"], b, f"Choices[{i}].Assign")
                    if "Assign" in rule
                    else None
                )
                output = (
                    _jx(step, rule["Output"], b, f"Choices[{i}].Output")
                    if "Output" in rule
                    else step.input
                )
                return Transition(rule["Next"], output, assign)
        if "Default" not in st:
            raise StatesError(NO_CHOICE_MATCHED, f"No Matches! in state '{st.name}'")
        assign = _jx(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = _jx(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return Transition(st.get("Default"), output, assign)
    effective = _input_path(step)
    env = _env(step, effective)
    for rule in st.get("Choices"):
        if evaluate_rule(rule, env):
            assign = _assign_jsonpath(step, rule["Assign"], effective) if "Assign" in rule else None
            return Transition(rule["Next"], _output_path(step, effective), assign)
    if "Default" not in st:
        raise StatesError(NO_CHOICE_MATCHED, f"No Matches! in state '{st.name}'")
    assign = _assign_jsonpath(step, st.get("Assign"), effective) if "Assign" in st else None
    return Transition(st.get("Default"), _output_path(step, effective), assign)


def _enter_wait(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step)
        if "Seconds" in st:
            seconds = _jx(step, st.get("Seconds"), b, "Seconds")
            if (
                not (isinstance(seconds, int | float) and not isinstance(seconds, bool))
                or seconds < 0
                or (isinstance(seconds, float) and not seconds.is_integer())
            ):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"The Seconds field must be a non-negative integer, not {json_text(seconds)}",
                )
            return Sleep(step.now + _dt.timedelta(seconds=seconds))
        ts = _jx(step, st.get("Timestamp"), b, "Timestamp")
        when = parse_time(ts) if isinstance(ts, str) else None
        if when is None:
            raise StatesError(
                QUERY_EVALUATION_ERROR,
                "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time "
                f"format string: {_as_text(ts)}",
            )
        return Sleep(when)
    effective = _input_path(step)
    env = _env(step, effective)
    if "Seconds" in st:
        return Sleep(step.now + _dt.timedelta(seconds=st.get("Seconds")))
    if "Timestamp" in st:
        when = parse_time(st.get("Timestamp"))
        assert when is not None  # validated
        return Sleep(when)
    if "SecondsPath" in st:
        path = st.get("SecondsPath")
        value = _select(compile_path(path), env)
        if isinstance(value, bool) or not isinstance(value, int):
            raise StatesError(
                RUNTIME,
                "The SecondsPath parameter cannot be parsed as a long value: "
                f"{path} == {java_string(value)}",
            )
        if value < 0:
            raise StatesError(
                RUNTIME, f"The SecondsPath parameter references a negative value: {path} == {value}"
            )
        return Sleep(step.now + _dt.timedelta(seconds=value))
    path = st.get("TimestampPath")
    value = _select(compile_path(path), env)
    when = parse_time(value) if isinstance(value, str) else None
    if when is None:
        raise StatesError(
            RUNTIME,
            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset "
            f"date-time format string: {path} == {java_string(value)}",
        )
    return Sleep(when)


def _number_field(
    step: StepInput, key: str, env: Env | None, bindings: Mapping[str, Any] | None, *, integer: bool
) -> float | None:
    """A number given literally, by a ``...Path`` field, or by a JSONata expression."""
    st = step.state
    kind = "integer" if integer else "float"
    if key in st:
        value = st.get(key)
        if bindings is not None and jsonata_.is_expression(value):
            value = _jx(step, value, bindings, key)
            if not (isinstance(value, int | float) and not isinstance(value, bool)):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"The {key} field must evaluate to a number, not {json_text(value)}",
                )
        return float(value)
    if env is not None and key + "Path" in st:
        path = st.get(key + "Path")
        value = _select(compile_path(path), env)
        parsed = _parse_number(value, integer=integer)
        if parsed is None:
            shown = value if isinstance(value, str) else json_text(value)
            raise StatesError(
                RUNTIME,
                f'The {key}Path field refers to value "{shown}" which is not a valid {kind}: '
                + path,
            )
        return parsed
    return None


def _parse_number(value: Any, *, integer: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        if integer and not value.is_integer():
            return None
        return value
    return None


def _enter_task(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = _bindings(step)
        payload = (
            _jx(step, st.get("Arguments"), b, "Arguments") if "Arguments" in st else step.input
        )
        timeout = _number_field(step, "TimeoutSeconds", None, b, integer=True)
        heartbeat = _number_field(step, "HeartbeatSeconds", None, b, integer=True)
    else:
        effective = _input_path(step)
        env = _env(step, effective)
        payload = evaluate_template(st.get("Parameters"), env) if "Parameters" in st else effective
        timeout = _number_field(step, "TimeoutSeconds", env, None, integer=True)
        heartbeat = _number_field(step, "HeartbeatSeconds", env, None, integer=True)
    return InvokeTask(st.get("Resource"), payload, timeout, heartbeat, step.task_token)


def _enter_parallel(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        payload = (
            _jx(step, st.get("Arguments"), _bindings(step), "Arguments")
            if "Arguments" in st
            else step.input
        )
    else:
        effective = _input_path(step)
        payload = (
            evaluate_template(st.get("Parameters"), _env(step, effective))
            if "Parameters" in st
            else effective
        )
    return RunBranches("Parallel", tuple(Branch(m, payload) for m in st.branches))


def _enter_map(step: StepInput) -> Action:
    st = step.state
    assert st.processor is not None
    if "ItemReader" in st:
        raise StatesError(
            ITEM_READER_FAILED,
            "ItemReader (reading items from S3) is not supported by the in-process interpreter",
        )
    env: Env | None = None
    bindings: dict[str, Any] | None = None
    if st.language == "JSONata":
        bindings = _bindings(step)
        effective = step.input
        items = _jx(step, st.get("Items"), bindings, "Items") if "Items" in st else step.input
        if not isinstance(items, list):
            raise StatesError(
                QUERY_EVALUATION_ERROR,
                f"Map state input must be an array but was: {json_text(items)}",
            )
    else:
        effective = _input_path(step)
        env = _env(step, effective)
        items = _select(compile_path(st.get("ItemsPath")), env) if "ItemsPath" in st else effective
        if not isinstance(items, list):
            raise StatesError(
                RUNTIME, f"Map state input must be an array but was: {json_text(items)}"
            )
    max_conc = _number_field(step, "MaxConcurrency", env, bindings, integer=True)
    count = _number_field(step, "ToleratedFailureCount", env, bindings, integer=True)
    pct = _number_field(step, "ToleratedFailurePercentage", env, bindings, integer=False)
    if count is not None and count < 0:
        raise StatesError(RUNTIME, "ToleratedFailureCount cannot be negative.")
    if pct is not None and not 0 <= pct <= 100:
        raise StatesError(RUNTIME, "ToleratedFailurePercentage must be between 0 and 100.")

    batches: list[Any] = list(items)
    batcher = st.get("ItemBatcher")
    if isinstance(batcher, Mapping):
        batches = _batch(step, batcher, items, env, bindings)

    selector_key = (
        "ItemSelector" if "ItemSelector" in st else "Parameters" if "Parameters" in st else None
    )
    inputs: list[Branch] = []
    for index, item in enumerate(batches):
        if selector_key is None:
            value = item
        elif bindings is not None:
            b = _bindings(step, map_item=(index, item))
            value = _jx(step, st.get(selector_key), b, selector_key)
        else:
            value = evaluate_template(st.get(selector_key), _env(step, effective, (index, item)))
        inputs.append(Branch(st.processor, value, index))
    return RunBranches(
        "Map",
        tuple(inputs),
        int(max_conc or 0),
        None if count is None else int(count),
        pct,
    )


def _batch(
    step: StepInput,
    batcher: Mapping[str, Any],
    items: list[Any],
    env: Env | None,
    bindings: Mapping[str, Any] | None,
) -> list[Any]:
    size: Any = batcher.get("MaxItemsPerBatch")
    if size is None and env is not None and "MaxItemsPerBatchPath" in batcher:
        size = _select(compile_path(batcher["MaxItemsPerBatchPath"]), env)
    if bindings is not None and jsonata_.is_expression(size):
        size = _jx(step, size, bindings, "ItemBatcher/MaxItemsPerBatch")
    max_bytes: Any = batcher.get("MaxInputBytesPerBatch")
    if max_bytes is None and env is not None and "MaxInputBytesPerBatchPath" in batcher:
        max_bytes = _select(compile_path(batcher["MaxInputBytesPerBatchPath"]), env)
    base: Any = batcher.get("BatchInput", {})
    if bindings is not None:
        base = _jx(step, base, bindings, "ItemBatcher/BatchInput")
    elif env is not None and isinstance(base, Mapping):
        base = evaluate_template(base, env)
    n = int(size) if isinstance(size, int | float) and size >= 1 else len(items) or 1
    limit = int(max_bytes) if isinstance(max_bytes, int | float) and max_bytes > 0 else None
    batches: list[Any] = []
    cur: list[Any] = []
    cur_bytes = 0
    for item in items:
        item_bytes = len(json_text(item).encode()) if limit else 0
        if cur and (len(cur) >= n or (limit is not None and cur_bytes + item_bytes > limit)):
            batches.append({**base, "Items": cur} if isinstance(base, Mapping) else {"Items": cur})
            cur, cur_bytes = [], 0
        cur.append(item)
        cur_bytes += item_bytes
    if cur:
        batches.append({**base, "Items": cur} if isinstance(base, Mapping) else {"Items": cur})
    return batches


def _map_done(step: StepInput, done: BranchesDone) -> Action:
    st = step.state
    failures = [o for o in done.outcomes if not o.ok]
    has_tolerance = any(
        k in st
        for k in (
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
        )
    )
    if failures:
        if not has_tolerance:
            return _handle_error(step, failures[0].error, failures[0].cause)
        env = None if st.language == "JSONata" else _env(step, _input_path(step))
        bindings = _bindings(step) if st.language == "JSONata" else None
        count = _number_field(step, "ToleratedFailureCount", env, bindings, integer=True)
        pct = _number_field(step, "ToleratedFailurePercentage", env, bindings, integer=False)
        total = done.total
        tolerated = False
        if count is not None and len(failures) <= count:
            tolerated = True
        if pct is not None and total and 100.0 * len(failures) / total <= pct:
            tolerated = True
        if not tolerated:
            return _handle_error(
                step,
                EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            )
    results = [o.output if o.ok else _error_output(o.error, o.cause) for o in done.outcomes]
    return _complete(step, results)


_ENTER = {
    "Pass": _enter_pass,
    "Task": _enter_task,
    "Choice": _enter_choice,
    "Wait": _enter_wait,
    "Succeed": _enter_succeed,
    "Fail": _enter_fail,
    "Parallel": _enter_parallel,
    "Map": _enter_map,
}
