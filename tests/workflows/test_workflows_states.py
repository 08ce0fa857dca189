"""Each state type and the JSONPath data flow (InputPath, Parameters, ResultSelector,
ResultPath, OutputPath), the context object and the history."""

from __future__ import annotations

import datetime as dt
import json

from setpiece.workflows import execute, validate
from tests.workflows.helpers import machine, one, output, run_machine


def test_pass_passes_its_input_through() -> None:
    assert one({"Type": "Pass"}, {"a": 1}) == {"a": 1}


def test_pass_result_replaces_input_and_dollar_keys_in_result_stay_literal() -> None:
    assert one({"Type": "Pass", "Result": {"k.$": "$.a"}}, {"a": 1}) == {"k.$": "$.a"}


def test_definition_may_be_json_text_and_input_none_means_empty_object() -> None:
    text = json.dumps(machine(("P", {"Type": "Pass"})))
    assert execute(text, None).output == {}


def test_input_path_parameters_result_path_output_path_in_order() -> None:
    state = {
        "Type": "Pass",
        "InputPath": "$.order",
        "Parameters": {"id.$": "$.id", "fixed": [1, {"nested.$": "$.qty"}]},
        "ResultPath": "$.shaped",
        "OutputPath": "$.shaped",
    }
    data = {"order": {"id": "o-1", "qty": 3}, "other": True}
    assert one(state, data) == {"id": "o-1", "fixed": [1, {"nested": 3}]}


def test_result_path_merges_into_raw_input_creating_objects() -> None:
    state = {"Type": "Pass", "Result": 7, "ResultPath": "$.a.b.c"}
    assert one(state, {"x": 1}) == {"x": 1, "a": {"b": {"c": 7}}}


def test_null_paths_discard() -> None:
    assert one({"Type": "Pass", "InputPath": None, "Parameters": {"in.$": "$"}}, {"a": 1}) == {
        "in": {}
    }
    assert one({"Type": "Pass", "Result": 1, "ResultPath": None}, {"a": 1}) == {"a": 1}
    assert one({"Type": "Pass", "OutputPath": None}, {"a": 1}) == {}


def test_missing_input_path_is_a_runtime_error_naming_the_state() -> None:
    ex = run_machine(machine(("P", {"Type": "Pass", "InputPath": "$.nope"})), {"a": 1})
    assert ex.status == "FAILED" and ex.error == "States.Runtime"
    assert ex.cause == (
        "An error occurred while executing the state 'P' (entered at the event id #2). "
        "Invalid path '$.nope' : No results for path: $['nope']"
    )


def test_missing_parameter_path_is_a_runtime_error() -> None:
    ex = run_machine(machine(("P", {"Type": "Pass", "Parameters": {"v.$": "$.a.b"}})), {"a": {}})
    assert ex.error == "States.Runtime"
    assert "The JSONPath '$.a.b' specified for the field 'v.$' could not be found" in str(ex.cause)


def test_result_path_on_an_array_fails_with_result_path_match_failure() -> None:
    ex = run_machine(machine(("P", {"Type": "Pass", "Result": 1, "ResultPath": "$.x"})), [1, 2])
    assert ex.error == "States.ResultPathMatchFailure"


def test_context_object_fields() -> None:
    state = {
        "Type": "Pass",
        "Parameters": {
            "input.$": "$$.Execution.Input",
            "name.$": "$$.Execution.Name",
            "id.$": "$$.Execution.Id",
            "start.$": "$$.Execution.StartTime",
            "state.$": "$$.State.Name",
            "entered.$": "$$.State.EnteredTime",
            "retries.$": "$$.State.RetryCount",
            "sm.$": "$$.StateMachine.Name",
        },
    }
    start = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    ex = execute(machine(("Here", state)), {"q": 1}, name="run-1", start_time=start)
    out = ex.output
    assert out["input"] == {"q": 1}
    assert out["name"] == "run-1" and out["id"].endswith(":run-1")
    assert out["start"] == "2024-05-01T12:00:00.000Z" == out["entered"]
    assert (out["state"], out["retries"], out["sm"]) == ("Here", 0, "setpiece")


def test_succeed_and_fail() -> None:
    assert one({"Type": "Succeed", "OutputPath": "$.a"}, {"a": 2}) == 2
    ex = run_machine(machine(("F", {"Type": "Fail", "Error": "Oops", "Cause": "because"})))
    assert (ex.status, ex.error, ex.cause, ex.output) == ("FAILED", "Oops", "because", None)
    ex = run_machine(
        machine(
            ("F", {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('n={}', $.n)"})
        ),
        {"e": "Custom", "n": 3},
    )
    assert (ex.error, ex.cause) == ("Custom", "n=3")
    ex = run_machine(machine(("F", {"Type": "Fail"})))
    assert (ex.status, ex.error, ex.cause) == ("FAILED", None, None)


def test_wait_advances_the_virtual_clock_without_sleeping() -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    definition = machine(
        ("W1", {"Type": "Wait", "Seconds": 3600}),
        ("W2", {"Type": "Wait", "SecondsPath": "$.s"}),
        ("W3", {"Type": "Wait", "Timestamp": "2024-01-02T00:00:00Z"}),
        ("W4", {"Type": "Wait", "TimestampPath": "$.t"}),
        ("P", {"Type": "Pass", "Parameters": {"now.$": "$$.State.EnteredTime"}}),
    )
    ex = execute(definition, {"s": 60, "t": "2024-01-01T00:00:00+00:00"}, start_time=start)
    assert ex.output == {"now": "2024-01-02T00:00:00.000Z"}
    assert ex.stop_date == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)


def test_wait_path_errors() -> None:
    w = machine(("W", {"Type": "Wait", "SecondsPath": "$.s"}))
    assert run_machine(w, {"s": -1}).cause.endswith(  # type: ignore[union-attr]
        "The SecondsPath parameter references a negative value: $.s == -1"
    )
    assert "cannot be parsed as a long value: $.s == 2.5" in str(run_machine(w, {"s": 2.5}).cause)
    t = machine(("W", {"Type": "Wait", "TimestampPath": "$.t"}))
    ex = run_machine(t, {"t": "2024-01-01 00:00:00Z"})
    assert ex.error == "States.Runtime" and "ISO-8601" in str(ex.cause)


def test_execution_timeout_on_the_virtual_clock() -> None:
    ex = run_machine(machine(("W", {"Type": "Wait", "Seconds": 100}), TimeoutSeconds=10))
    assert (ex.status, ex.error) == ("TIMED_OUT", "States.Timeout")


def test_choice_routes_and_default() -> None:
    definition = machine(
        (
            "C",
            {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
                    {
                        "And": [
                            {"Variable": "$.s", "IsPresent": True},
                            {"Not": {"Variable": "$.s", "StringEquals": "x"}},
                        ],
                        "Next": "Named",
                    },
                ],
                "Default": "Other",
            },
        ),
        ("Big", {"Type": "Pass", "Result": "big", "End": True}),
        ("Named", {"Type": "Pass", "Result": "named", "End": True}),
        ("Other", {"Type": "Pass", "Result": "other", "End": True}),
    )
    assert output(definition, {"n": 11}) == "big"
    assert output(definition, {"n": 1, "s": "y"}) == "named"
    assert output(definition, {"n": 1, "s": "x"}) == "other"


def test_choice_without_match_or_default_fails() -> None:
    definition = machine(
        ("C", {"Type": "Choice", "Choices": [{"Variable": "$.n", "IsNull": True, "Next": "E"}]}),
        ("E", {"Type": "Succeed"}),
    )
    assert run_machine(definition, {"n": 1}).error == "States.NoChoiceMatched"


def test_history_records_events_with_ids_and_virtual_timestamps() -> None:
    ex = run_machine(machine(("A", {"Type": "Pass"}), ("B", {"Type": "Wait", "Seconds": 5})))
    types = [e.type for e in ex.history]
    assert types == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "WaitStateEntered",
        "WaitStateExited",
        "ExecutionSucceeded",
    ]
    assert [e.id for e in ex.history] == list(range(1, 7))
    assert ex.history[4].timestamp - ex.history[3].timestamp == dt.timedelta(seconds=5)
    assert ex.history[1].details["name"] == "A"


def test_validate_returns_a_reusable_state_machine() -> None:
    sm = validate(machine(("P", {"Type": "Pass", "Parameters": {"x.$": "$.x"}})))
    assert execute(sm, {"x": 1}).output == {"x": 1}
    assert execute(sm, {"x": 2}).output == {"x": 2}


def test_data_the_interpreter_cannot_handle_is_a_runtime_error_not_a_crash() -> None:
    ex = run_machine(machine(("W", {"Type": "Wait", "SecondsPath": "$.s"})), {"s": 10**20})
    assert ex.error == "States.Runtime" and "OverflowError" in str(ex.cause)
