"""JSONata states and workflow variables."""

from __future__ import annotations

from typing import Any

from setpiece.workflows import TaskFailed
from tests.workflows.helpers import machine, one, output, run_machine

JSONATA = {"QueryLanguage": "JSONata"}


def test_output_assign_and_states_input() -> None:
    definition = machine(
        (
            "A",
            {
                "Type": "Pass",
                "Assign": {"total": "{% $sum($states.input.xs) %}"},
                "Output": {"n": "{% $count($states.input.xs) %}"},
            },
        ),
        (
            "B",
            {"Type": "Pass", "Output": "{% {'avg': $total / $states.input.n, 'literal': 'x'} %}"},
        ),
        **JSONATA,
    )
    assert output(definition, {"xs": [1, 2, 3]}) == {"avg": 2, "literal": "x"}


def test_assignments_in_one_state_see_the_previous_values() -> None:
    definition = machine(
        ("A", {"Type": "Pass", "Assign": {"v": 1}}),
        ("B", {"Type": "Pass", "Assign": {"v": 2, "old": "{% $v %}"}}),
        ("C", {"Type": "Pass", "Output": "{% [$v, $old] %}"}),
        **JSONATA,
    )
    assert output(definition) == [2, 1]


def test_task_arguments_result_and_error_output() -> None:
    def tasks(state: str, payload: Any) -> Any:
        if payload["n"] < 0:
            raise TaskFailed("Negative", "n < 0")
        return {"sq": payload["n"] ** 2}

    definition = machine(
        (
            "T",
            {
                "Type": "Task",
                "Resource": "r",
                "Arguments": {"n": "{% $states.input.value %}"},
                "Output": "{% $states.result.sq %}",
                "Assign": {"last": "{% $states.result %}"},
                "Catch": [
                    {
                        "ErrorEquals": ["Negative"],
                        "Output": "{% $join($states.errorOutput.*, ': ') %}",
                        "Next": "Caught",
                    }
                ],
                "Next": "Done",
            },
        ),
        ("Done", {"Type": "Pass", "Output": "{% [$states.input, $last] %}", "End": True}),
        ("Caught", {"Type": "Pass", "End": True}),
        **JSONATA,
    )
    assert output(definition, {"value": 3}, tasks=tasks) == [9, {"sq": 9}]
    assert output(definition, {"value": -1}, tasks=tasks) == "Negative: n < 0"


def test_choice_conditions_with_assign_and_output() -> None:
    definition = machine(
        (
            "C",
            {
                "Type": "Choice",
                "Choices": [
                    {
                        "Condition": "{% $states.input.n > 10 %}",
                        "Next": "Big",
                        "Output": "{% 'big ' & $states.input.n %}",
                    }
                ],
                "Default": "Small",
                "Assign": {"went": "default"},
            },
        ),
        ("Big", {"Type": "Pass", "End": True}),
        ("Small", {"Type": "Pass", "Output": "{% $went %}", "End": True}),
        **JSONATA,
    )
    assert output(definition, {"n": 11}) == "big 11"
    assert output(definition, {"n": 1}) == "default"


def test_map_items_item_selector_and_context() -> None:
    state = {
        "Type": "Map",
        "Items": "{% $states.input.things %}",
        "ItemSelector": {
            "i": "{% $states.context.Map.Item.Index %}",
            "v": "{% $states.context.Map.Item.Value %}",
        },
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "Output": "{% $states.result.v %}",
    }
    assert output(machine(("M", state), **JSONATA), {"things": ["a", "b"]}) == ["a", "b"]


def test_wait_and_fail_with_expressions() -> None:
    definition = machine(
        ("W", {"Type": "Wait", "Seconds": "{% $states.input.s %}"}),
        (
            "F",
            {
                "Type": "Fail",
                "Error": "{% 'E' & $states.input.s %}",
                "Cause": "{% $string($states.input) %}",
            },
        ),
        **JSONATA,
    )
    ex = run_machine(definition, {"s": 2})
    assert (ex.error, ex.cause) == ("E2", '{"s":2}')


def test_undefined_results_and_evaluation_errors_are_query_evaluation_errors() -> None:
    ex = run_machine(
        machine(("S", {"Type": "Pass", "Output": {"a": ["{% $nothing %}"]}}), **JSONATA)
    )
    assert ex.error == "States.QueryEvaluationError"
    assert ex.cause == (
        "An error occurred while executing the state 'S' (entered at the event id #2). The JSONata "
        "expression '$nothing' specified for the field 'Output/a[0]' returned nothing (undefined)."
    )
    ex = run_machine(machine(("S", {"Type": "Pass", "Output": "{% $nope(1) %}"}), **JSONATA))
    assert ex.error == "States.QueryEvaluationError" and "T1006" in str(ex.cause)


def test_step_functions_extra_functions() -> None:
    out = one(
        {
            "Type": "Pass",
            "QueryLanguage": "JSONata",
            "Output": {
                "part": "{% $partition([1,2,3], 2) %}",
                "range": "{% $range(0, 6, 3) %}",
                "one": "{% $range(1, 1, 1) %}",
                "hash": "{% $hash('abc', 'MD5') %}",
                "parsed": "{% $parse('{\"a\": [1]}') %}",
                "rand": "{% $random() < 1 %}",
                "uuid": "{% $length($uuid()) %}",
            },
        }
    )
    assert out == {
        "part": [[1, 2], [3]],
        "range": [0, 3, 6],
        "one": 1,
        "hash": "900150983cd24fb0d6963f7d28e17f72",
        "parsed": {"a": [1]},
        "rand": True,
        "uuid": 36,
    }


def test_nulls_survive_jsonata() -> None:
    state = {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Output": {"n": "{% $states.input.n %}", "l": "{% $states.input.l %}"},
    }
    assert one(state, {"n": None, "l": [1, None]}) == {"n": None, "l": [1, None]}


def test_mixed_languages_share_variables() -> None:
    definition = machine(
        ("J", {"Type": "Pass", "QueryLanguage": "JSONata", "Assign": {"x": "{% 40 + 2 %}"}}),
        ("P", {"Type": "Pass", "Parameters": {"x.$": "$x"}}),
    )
    assert output(definition) == {"x": 42}
