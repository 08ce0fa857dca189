"""Map and Parallel: items, selectors, scopes, failures, tolerance, batching."""

from __future__ import annotations

from typing import Any

from setpiece.workflows import TaskFailed
from tests.workflows.helpers import machine, one, output, run_machine

PASS_PROCESSOR = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
TASK_PROCESSOR = {
    "StartAt": "Work",
    "States": {"Work": {"Type": "Task", "Resource": "r", "End": True}},
}


def fail_on(bad: set[Any]) -> Any:
    def tasks(state: str, payload: Any) -> Any:
        if payload in bad:
            raise TaskFailed("Bad.Item", f"item {payload}")
        return payload * 10

    return tasks


def test_map_over_items_path_with_item_selector_and_context() -> None:
    state = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "k.$": "$.k"},
        "ItemProcessor": PASS_PROCESSOR,
        "ResultPath": "$.out",
    }
    assert one(state, {"items": ["a", "b"], "k": 1}) == {
        "items": ["a", "b"],
        "k": 1,
        "out": [{"v": "a", "i": 0, "k": 1}, {"v": "b", "i": 1, "k": 1}],
    }


def test_legacy_iterator_and_parameters() -> None:
    state = {"Type": "Map", "Parameters": {"x.$": "$$.Map.Item.Value"}, "Iterator": PASS_PROCESSOR}
    assert one(state, [1, 2]) == [{"x": 1}, {"x": 2}]


def test_map_calls_tasks_for_every_item_and_max_concurrency_is_accepted() -> None:
    state = {"Type": "Map", "MaxConcurrency": 2, "ItemProcessor": TASK_PROCESSOR}
    assert one(state, [1, 2, 3], tasks=fail_on(set())) == [10, 20, 30]


def test_map_item_failure_fails_the_map_and_can_be_caught() -> None:
    definition = machine(
        (
            "M",
            {
                "Type": "Map",
                "ItemProcessor": TASK_PROCESSOR,
                "Catch": [{"ErrorEquals": ["Bad.Item"], "Next": "C"}],
                "End": True,
            },
        ),
        ("C", {"Type": "Pass", "End": True}),
    )
    assert output(definition, [1, 2, 3], tasks=fail_on({2})) == {
        "Error": "Bad.Item",
        "Cause": "item 2",
    }


def test_tolerated_failures() -> None:
    state = {"Type": "Map", "ItemProcessor": TASK_PROCESSOR, "ToleratedFailureCount": 1}
    out = one(state, [1, 2, 3], tasks=fail_on({2}))
    assert out == [10, {"Error": "Bad.Item", "Cause": "item 2"}, 30]
    ex = run_machine(machine(("M", state)), [1, 2, 3], tasks=fail_on({1, 2}))
    assert ex.error == "States.ExceedToleratedFailureThreshold"
    pct = {
        "Type": "Map",
        "ItemProcessor": TASK_PROCESSOR,
        "ToleratedFailurePercentagePath": "$.p",
        "ItemsPath": "$.i",
    }
    assert run_machine(
        machine(("M", pct)), {"i": [1, 2, 3, 4], "p": 50}, tasks=fail_on({1, 2})
    ).succeeded
    assert run_machine(
        machine(("M", pct)), {"i": [1, 2, 3, 4], "p": "25"}, tasks=fail_on({1, 2})
    ).error == ("States.ExceedToleratedFailureThreshold")


def test_map_path_fields_are_checked() -> None:
    state = {
        "Type": "Map",
        "ItemProcessor": PASS_PROCESSOR,
        "ItemsPath": "$.i",
        "MaxConcurrencyPath": "$.m",
    }
    ex = run_machine(machine(("M", state)), {"i": [1], "m": "lots"})
    assert ex.error == "States.Runtime"
    assert str(ex.cause).endswith(
        'The MaxConcurrencyPath field refers to value "lots" which is not a valid integer: $.m'
    )
    ex = run_machine(
        machine(("M", {"Type": "Map", "ItemProcessor": PASS_PROCESSOR})), {"not": "a list"}
    )
    assert ex.error == "States.Runtime" and "must be an array" in str(ex.cause)


def test_item_batcher() -> None:
    state = {
        "Type": "Map",
        "ItemProcessor": PASS_PROCESSOR,
        "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"tag": "t"}},
    }
    assert one(state, [1, 2, 3]) == [{"tag": "t", "Items": [1, 2]}, {"tag": "t", "Items": [3]}]


def test_parallel_runs_branches_in_order_and_fails_with_the_branch_error() -> None:
    branches = [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "r", "End": True}}},
    ]
    state = {"Type": "Parallel", "Branches": branches, "ResultSelector": {"both.$": "$"}}
    assert one(state, 4, tasks=fail_on(set())) == {"both": ["a", 40]}
    ex = run_machine(machine(("Par", state)), 4, tasks=fail_on({4}))
    assert (ex.error, ex.cause) == ("Bad.Item", "item 4")


def test_parallel_retry_reruns_all_branches() -> None:
    calls: list[Any] = []

    def tasks(state: str, payload: Any) -> Any:
        calls.append(payload)
        if len(calls) == 1:
            raise TaskFailed("Once")
        return "ok"

    branches = [{"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "r", "End": True}}}]
    state = {"Type": "Parallel", "Branches": branches, "Retry": [{"ErrorEquals": ["Once"]}]}
    assert one(state, tasks=tasks) == ["ok"]
    assert len(calls) == 2


def test_variable_scopes_in_map_and_parallel() -> None:
    inner = {
        "StartAt": "Set",
        "States": {
            "Set": {"Type": "Pass", "Assign": {"inner.$": "$outer"}, "Next": "Read"},
            "Read": {
                "Type": "Pass",
                "Parameters": {"outer.$": "$outer", "inner.$": "$inner"},
                "End": True,
            },
        },
    }
    definition = machine(
        ("Init", {"Type": "Pass", "Assign": {"outer": 1}}),
        ("M", {"Type": "Map", "ItemProcessor": inner, "ItemsPath": "$.items", "ResultPath": "$.m"}),
        ("Par", {"Type": "Parallel", "Branches": [inner], "ResultPath": "$.p"}),
        ("After", {"Type": "Pass", "Parameters": {"m.$": "$.m", "p.$": "$.p", "seen.$": "$outer"}}),
    )
    out = output(definition, {"items": [0]})
    assert out == {"m": [{"outer": 1, "inner": 1}], "p": [{"outer": 1, "inner": 1}], "seen": 1}
    # the inner variable did not leak out of the branch
    leak = machine(
        ("M", {"Type": "Map", "ItemProcessor": inner, "ItemsPath": "$.items", "ResultPath": None}),
        ("After", {"Type": "Pass", "Parameters": {"x.$": "$inner"}}),
    )
    assert (
        run_machine(
            leak,
            {"items": [0]},
        ).error
        == "States.Runtime"
    )


def test_map_history_has_iterations() -> None:
    ex = run_machine(machine(("M", {"Type": "Map", "ItemProcessor": PASS_PROCESSOR})), [1, 2])
    types = [e.type for e in ex.history]
    assert types[:4] == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
    ]
    assert types.count("MapIterationSucceeded") == 2
    assert types[-3:] == ["MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"]
