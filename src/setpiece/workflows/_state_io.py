"""A state's input and output processing, shared by every state type: InputPath, OutputPath,
ResultPath, ResultSelector, Assign (JSONPath), JSONata fields, numbers given literally or by
path, and the action that ends a state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from setpiece.workflows import _jsonata as jsonata_
from setpiece.workflows._actions import Action, Finish, StepInput, Transition
from setpiece.workflows._errors import (
    INTRINSIC_FAILURE,
    QUERY_EVALUATION_ERROR,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    StatesError,
)
from setpiece.workflows._intrinsics import json_text
from setpiece.workflows._paths import JsonPath, PathNotFound, compile_path, set_result_path
from setpiece.workflows._payload import Env, evaluate_template, resolve_path

__all__ = [
    "apply_input_path",
    "apply_output_path",
    "apply_result_path",
    "assign_jsonpath",
    "complete",
    "finish_plain",
    "jsonata_bindings",
    "located_cause",
    "next_action",
    "number_field",
    "path_env",
    "query",
    "select_path",
]

_LOCATED = frozenset({RUNTIME, QUERY_EVALUATION_ERROR, INTRINSIC_FAILURE})


def located_cause(step: StepInput, e: StatesError) -> str | None:
    """Errors of the interpreter itself name the state, as Step Functions does."""
    if e.error not in _LOCATED:
        return e.cause
    return (
        f"An error occurred while executing the state '{step.state.name}' (entered at the event "
        f"id #{step.entered_event_id}). {e.cause}"
    )


def path_env(step: StepInput, data: Any, map_item: tuple[int, Any] | None = None) -> Env:
    """What JSONPath fields of ``step`` see: ``data`` as ``$``, the context object as ``$$``."""
    return Env(data, lambda: step.context(map_item), step.scope, step.limits.max_value_size)


def jsonata_bindings(step: StepInput, **states: Any) -> dict[str, Any]:
    """What JSONata fields of ``step`` see: the variables and ``$states``."""
    b = step.scope.visible()
    states.setdefault("input", step.input)
    states.setdefault("context", step.context(states.pop("map_item", None)))
    b["states"] = states
    return b


def apply_input_path(step: StepInput) -> Any:
    """The state's effective input (InputPath applied)."""
    st = step.state
    if not st.has_input_path:
        return step.input
    if st.input_path is None:
        return {}
    return select_path(st.input_path, path_env(step, step.input))


def select_path(path: JsonPath, env: Env) -> Any:
    """The value at ``path``; a missing one is a ``States.Runtime`` error."""
    try:
        return resolve_path(path, env)
    except PathNotFound as e:
        raise StatesError(RUNTIME, f"Invalid path '{path.text}' : {e.message}") from None


def apply_output_path(step: StepInput, data: Any) -> Any:
    """The state's output (OutputPath applied to ``data``)."""
    st = step.state
    if not st.has_output_path:
        return data
    if st.output_path is None:
        return {}
    return select_path(st.output_path, path_env(step, data))


def apply_result_path(
    step: StepInput, raw_input: Any, result: Any, path: JsonPath | None, present: bool
) -> Any:
    """``result`` placed into ``raw_input`` at the ResultPath ``path`` (if ``present``)."""
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


def assign_jsonpath(step: StepInput, template: Any, data: Any) -> dict[str, Any]:
    assigned: dict[str, Any] = evaluate_template(template, path_env(step, data))  # an object
    return assigned


def query(step: StepInput, template: Any, bindings: Mapping[str, Any], field: str) -> Any:
    """The value of the JSONata field ``field`` (``template``) under ``bindings``."""
    return jsonata_.resolve(template, bindings, field, step.limits)


def next_action(step: StepInput, output: Any, assign: Mapping[str, Any] | None) -> Action:
    """Go to the state's ``Next``, or finish the (sub-)machine at its ``End``."""
    st = step.state
    if st.end or st.next is None:
        return Finish(output, assign)
    return Transition(st.next, output, assign)


def finish_plain(step: StepInput, effective: Any) -> Action:
    """End a Wait state (its output is its input, reshaped)."""
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step)
        assign = query(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = query(step, st.get("Output"), b, "Output") if "Output" in st else step.input
        return next_action(step, output, assign)
    assign = assign_jsonpath(step, st.get("Assign"), effective) if "Assign" in st else None
    return next_action(step, apply_output_path(step, effective), assign)


def complete(step: StepInput, result: Any) -> Action:
    """A Task, Parallel or Map produced ``result``: select, assign, place, output."""
    st = step.state
    if st.language == "JSONata":
        b = jsonata_bindings(step, result=result)
        assign = query(step, st.get("Assign"), b, "Assign") if "Assign" in st else None
        output = query(step, st.get("Output"), b, "Output") if "Output" in st else result
        return next_action(step, output, assign)
    if "ResultSelector" in st:
        result = evaluate_template(st.get("ResultSelector"), path_env(step, result))
    assign = assign_jsonpath(step, st.get("Assign"), result) if "Assign" in st else None
    data = apply_result_path(step, step.input, result, st.result_path, st.has_result_path)
    return next_action(step, apply_output_path(step, data), assign)


def number_field(
    step: StepInput, key: str, env: Env | None, bindings: Mapping[str, Any] | None, *, integer: bool
) -> float | None:
    """A number given literally, by a ``...Path`` field, or by a JSONata expression."""
    st = step.state
    kind = "integer" if integer else "float"
    if key in st:
        value = st.get(key)
        if bindings is not None and jsonata_.is_expression(value):
            value = query(step, value, bindings, key)
            if not (isinstance(value, int | float) and not isinstance(value, bool)):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"The {key} field must evaluate to a number, not {json_text(value)}",
                )
        return float(value)
    if env is not None and key + "Path" in st:
        path = st.get(key + "Path")
        value = select_path(compile_path(path), env)
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

