"""The states that run no child machine: Pass, Succeed, Fail, Choice, Wait and Task."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from setpiece.workflows._actions import (
    Action,
    Failure,
    Finish,
    InvokeTask,
    Sleep,
    StepInput,
    Transition,
)
from setpiece.workflows._choice import evaluate_rule
from setpiece.workflows._context import parse_time
from setpiece.workflows._errors import (
    NO_CHOICE_MATCHED,
    QUERY_EVALUATION_ERROR,
    RUNTIME,
    StatesError,
)
from setpiece.workflows._intrinsics import java_string, json_text
from setpiece.workflows._paths import compile_path
from setpiece.workflows._payload import evaluate_template, resolve_value
from setpiece.workflows._state_io import (
    apply_input_path,
    apply_output_path,
    apply_result_path,
    assign_jsonpath,
    jsonata_bindings,
    next_action,
    number_field,
    path_env,
    query,
    select_path,
)

__all__ = [
    "enter_choice",
    "enter_fail",
    "enter_pass",
    "enter_succeed",
    "enter_task",
    "enter_wait",
]


def enter_pass(step: StepInput) -> Action:
    st = step.state
    if st.passthrough:
        return next_action(step, step.input, None)
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        assign = query(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = query(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return next_action(step, output, assign)
    effective = apply_input_path(step)
    if "Parameters" in st:
        effective = evaluate_template(st.get("Parameters"), path_env(step, effective))
    result = st.get("Result") if "Result" in st else effective
    assign = assign_jsonpath(step, st.get("Assign"), result) if "Assign" in st else None
    data = apply_result_path(step, step.input, result, st.result_path, st.has_result_path)
    return next_action(step, apply_output_path(step, data), assign)


def enter_succeed(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        output = query(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return Finish(output)
    return Finish(apply_output_path(step, apply_input_path(step)))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def enter_fail(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        error = query(step, st.get("Error"), b, "Error") if "Error" in st else None
        cause = query(step, st.get("Cause"), b, "Cause") if "Cause" in st else None
        return Failure(
            None if error is None else _as_text(error), None if cause is None else _as_text(cause)
        )
    env = path_env(step, step.input)
    error = st.get("Error")
    cause = st.get("Cause")
    if "ErrorPath" in st:
        error = _as_text(resolve_value(st.get("ErrorPath"), env, "ErrorPath"))
    if "CausePath" in st:
        cause = _as_text(resolve_value(st.get("CausePath"), env, "CausePath"))
    return Failure(error, cause)


def enter_choice(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        for i, rule in enumerate(st.get("Choices")):
            cond = rule["Condition"]
            value = (
                query(step, cond, b, f"Choices[{i}].Condition") if isinstance(cond, str) else cond
            )
            if not isinstance(value, bool):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"The Condition of Choices[{i}] must evaluate to a boolean, "
                    f"not {json_text(value)}",
                )
            if value:
                assign = (
                    query(step, rule["Assign"], b, f"Choices[{i}].Assign")
                    if "Assign" in rule
                    else None
                )
                output = (
                    query(step, rule["Output"], b, f"Choices[{i}].Output")
                    if "Output" in rule
                    else step.input
                )
                return Transition(rule["Next"], output, assign)
        if "Default" not in st:
            raise StatesError(NO_CHOICE_MATCHED, f"No Matches! in state '{st.name}'")
        assign = query(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = query(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return Transition(st.get("Default"), output, assign)
    effective = apply_input_path(step)
    env = path_env(step, effective)
    for rule in st.get("Choices"):
        if evaluate_rule(rule, env):
            assign = assign_jsonpath(step, rule["Assign"], effective) if "Assign" in rule else None
            return Transition(rule["Next"], apply_output_path(step, effective), assign)
    if "Default" not in st:
        raise StatesError(NO_CHOICE_MATCHED, f"No Matches! in state '{st.name}'")
    assign = assign_jsonpath(step, st.get("Assign"), effective) if "Assign" in st else None
    return Transition(st.get("Default"), apply_output_path(step, effective), assign)


def enter_wait(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        if "Seconds" in st:
            seconds = query(step, st.get("Seconds"), b, "Seconds")
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
        ts = query(step, st.get("Timestamp"), b, "Timestamp")
        when = parse_time(ts) if isinstance(ts, str) else None
        if when is None:
            raise StatesError(
                QUERY_EVALUATION_ERROR,
                "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time "
                f"format string: {_as_text(ts)}",
            )
        return Sleep(when)
    effective = apply_input_path(step)
    env = path_env(step, effective)
    if "Seconds" in st:
        return Sleep(step.now + _dt.timedelta(seconds=st.get("Seconds")))
    if "Timestamp" in st:
        when = parse_time(st.get("Timestamp"))
        assert when is not None  # validated
        return Sleep(when)
    if "SecondsPath" in st:
        path = st.get("SecondsPath")
        value = select_path(compile_path(path), env)
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
    value = select_path(compile_path(path), env)
    when = parse_time(value) if isinstance(value, str) else None
    if when is None:
        raise StatesError(
            RUNTIME,
            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset "
            f"date-time format string: {path} == {java_string(value)}",
        )
    return Sleep(when)


def enter_task(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        payload = (
            query(step, st.get("Arguments"), b, "Arguments") if "Arguments" in st else step.input
        )
        timeout = number_field(step, "TimeoutSeconds", None, b, integer=True)
        heartbeat = number_field(step, "HeartbeatSeconds", None, b, integer=True)
    else:
        effective = apply_input_path(step)
        env = path_env(step, effective)
        payload = evaluate_template(st.get("Parameters"), env) if "Parameters" in st else effective
        timeout = number_field(step, "TimeoutSeconds", env, None, integer=True)
        heartbeat = number_field(step, "HeartbeatSeconds", env, None, integer=True)
    return InvokeTask(st.get("Resource"), payload, timeout, heartbeat, step.task_token)

