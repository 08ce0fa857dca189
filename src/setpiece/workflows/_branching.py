"""The states that run child machines: Parallel (its branches) and Map (its iterations, item
selection and batching, and the failure tolerance once they are done)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from setpiece.workflows import _jsonata as jsonata_
from setpiece.workflows._actions import Action, Branch, BranchesDone, RunBranches, StepInput
from setpiece.workflows._errors import (
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    ITEM_READER_FAILED,
    QUERY_EVALUATION_ERROR,
    RUNTIME,
    StatesError,
)
from setpiece.workflows._intrinsics import json_text
from setpiece.workflows._paths import compile_path
from setpiece.workflows._payload import Env, evaluate_template
from setpiece.workflows._retry import error_output, handle_error
from setpiece.workflows._state_io import (
    apply_input_path,
    complete,
    jsonata_bindings,
    number_field,
    path_env,
    query,
    select_path,
)

__all__ = ["enter_map", "enter_parallel", "map_done"]


def enter_parallel(step: StepInput) -> Action:
    st = step.state
    if st.language == "JSONata":
        payload = (
            query(step, st.get("Arguments"), jsonata_bindings(step), "Arguments")
            if "Arguments" in st
            else step.input
        )
    else:
        effective = apply_input_path(step)
        payload = (
            evaluate_template(st.get("Parameters"), path_env(step, effective))
            if "Parameters" in st
            else effective
        )
    return RunBranches("Parallel", tuple(Branch(m, payload) for m in st.branches))


def enter_map(step: StepInput) -> Action:
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
        bindings = jsonata_bindings(step)
        effective = step.input
        items = query(step, st.get("Items"), bindings, "Items") if "Items" in st else step.input
        if not isinstance(items, list):
            raise StatesError(
                QUERY_EVALUATION_ERROR,
                f"Map state input must be an array but was: {json_text(items)}",
            )
    else:
        effective = apply_input_path(step)
        env = path_env(step, effective)
        items = (
            select_path(compile_path(st.get("ItemsPath")), env)
            if "ItemsPath" in st
            else effective
        )
        if not isinstance(items, list):
            raise StatesError(
                RUNTIME, f"Map state input must be an array but was: {json_text(items)}"
            )
    max_conc = number_field(step, "MaxConcurrency", env, bindings, integer=True)
    count = number_field(step, "ToleratedFailureCount", env, bindings, integer=True)
    pct = number_field(step, "ToleratedFailurePercentage", env, bindings, integer=False)
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
            b = jsonata_bindings(step, map_item=(index, item))
            value = query(step, st.get(selector_key), b, selector_key)
        else:
            env_i = path_env(step, effective, (index, item))
            value = evaluate_template(st.get(selector_key), env_i)
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
        size = select_path(compile_path(batcher["MaxItemsPerBatchPath"]), env)
    if bindings is not None and jsonata_.is_expression(size):
        size = query(step, size, bindings, "ItemBatcher/MaxItemsPerBatch")
    max_bytes: Any = batcher.get("MaxInputBytesPerBatch")
    if max_bytes is None and env is not None and "MaxInputBytesPerBatchPath" in batcher:
        max_bytes = select_path(compile_path(batcher["MaxInputBytesPerBatchPath"]), env)
    base: Any = batcher.get("BatchInput", {})
    if bindings is not None:
        base = query(step, base, bindings, "ItemBatcher/BatchInput")
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


def map_done(step: StepInput, done: BranchesDone) -> Action:
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
            return handle_error(step, failures[0].error, failures[0].cause)
        env = None if st.language == "JSONata" else path_env(step, apply_input_path(step))
        bindings = jsonata_bindings(step) if st.language == "JSONata" else None
        count = number_field(step, "ToleratedFailureCount", env, bindings, integer=True)
        pct = number_field(step, "ToleratedFailurePercentage", env, bindings, integer=False)
        total = done.total
        tolerated = False
        if count is not None and len(failures) <= count:
            tolerated = True
        if pct is not None and total and 100.0 * len(failures) / total <= pct:
            tolerated = True
        if not tolerated:
            return handle_error(
                step,
                EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            )
    results = [o.output if o.ok else error_output(o.error, o.cause) for o in done.outcomes]
    return complete(step, results)


