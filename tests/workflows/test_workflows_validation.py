"""validate() rejects bad definitions with a message naming the state and the field."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece.workflows import DefinitionError, execute, validate

PASS_END = {"Type": "Pass", "End": True}


def states(**kw: Any) -> dict[str, Any]:
    return {"StartAt": next(iter(kw)), "States": kw}


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("{not json", "definition is not valid JSON"),
        ([], "definition must be a JSON object"),
        ({"States": {"A": PASS_END}}, "StartAt is required"),
        ({"StartAt": "B", "States": {"A": PASS_END}}, "StartAt refers to an unknown state 'B'"),
        ({"StartAt": "A", "States": {}}, "States must be a non-empty object"),
        ({"StartAt": "A", "States": {"A": PASS_END}, "Bogus": 1}, "unknown field 'Bogus'"),
        (states(A={"Type": "Pass", "Next": "Z"}), "States.A: Next refers to an unknown state 'Z'"),
        (states(A={"Type": "Pass"}), 'States.A: a non-terminal state needs "Next" or "End": true'),
        (
            states(A={"Type": "Pass", "Next": "B", "End": True}, B=PASS_END),
            "States.A: a state cannot have both Next and End",
        ),
        (states(A=PASS_END, B=PASS_END), "States.B: state is not reachable from StartAt"),
        (states(A={"Type": "Nope"}), "States.A: Type must be one of"),
        (
            states(A={"Type": "Succeed", "End": True}),
            "States.A: a Succeed state cannot have Next or End",
        ),
        (
            states(A={"Type": "Pass", "End": True, "Resource": "x"}),
            "States.A: field 'Resource' is not valid in a Pass state",
        ),
        (
            states(A={"Type": "Pass", "End": True, "Output": 1}),
            "States.A: field 'Output' is not supported in JSONPath states",
        ),
        (
            states(A={"Type": "Pass", "End": True, "InputPath": "nope"}),
            'States.A: InputPath must be a JSONPath starting with "$"',
        ),
        (
            states(A={"Type": "Pass", "End": True, "ResultPath": "$.a[*]"}),
            "States.A: ResultPath must be a reference path",
        ),
        (
            states(A={"Type": "Pass", "End": True, "Parameters": {"x.$": "$.a["}}),
            "States.A: Parameters.x.$ is not a valid JSONPath",
        ),
        (
            states(A={"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Nope()"}}),
            "unknown function 'States.Nope'",
        ),
        (
            states(A={"Type": "Pass", "End": True, "Assign": {"1bad": 1}}),
            "States.A: Assign: '1bad' is not a valid variable name",
        ),
        (states(A={"Type": "Task", "End": True}), "States.A: Resource is required"),
        (
            states(A={"Type": "Task", "Resource": "r", "End": True, "TimeoutSeconds": 0}),
            "States.A: TimeoutSeconds must be a positive integer",
        ),
        (
            states(
                A={
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "TimeoutSeconds": 5,
                    "HeartbeatSeconds": 5,
                }
            ),
            "HeartbeatSeconds must be smaller than TimeoutSeconds",
        ),
        (
            states(
                A={"Type": "Task", "Resource": "r", "End": True, "Retry": [{"ErrorEquals": []}]}
            ),
            "States.A.Retry[0]: ErrorEquals must be a non-empty array",
        ),
        (
            states(
                A={
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL"], "BackoffRate": 0.5}],
                }
            ),
            "States.A.Retry[0]: BackoffRate must be a number >= 1.0",
        ),
        (
            states(
                A={
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL", "X"]}],
                }
            ),
            '"States.ALL" must appear alone',
        ),
        (
            states(
                A={
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                }
            ),
            '"States.ALL" must be in the last',
        ),
        (
            states(
                A={
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}],
                }
            ),
            "JitterStrategy must be",
        ),
        (
            states(
                A={"Type": "Task", "Resource": "r", "End": True, "Catch": [{"ErrorEquals": ["X"]}]}
            ),
            "States.A.Catch[0]: Next is required",
        ),
        (
            states(
                A={
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Catch": [{"ErrorEquals": ["X"], "Next": "Q"}],
                }
            ),
            "States.A.Catch[0]: Next refers to an unknown state 'Q'",
        ),
        (
            states(A={"Type": "Pass", "End": True, "Retry": []}),
            "States.A: field 'Retry' is not valid in a Pass state",
        ),
        (
            states(A={"Type": "Wait", "End": True}),
            "States.A: one of Seconds, Timestamp, SecondsPath, TimestampPath is required",
        ),
        (
            states(A={"Type": "Wait", "End": True, "Seconds": 1, "SecondsPath": "$.s"}),
            "only one of Seconds, Timestamp",
        ),
        (
            states(A={"Type": "Wait", "End": True, "Timestamp": "2024-01-01"}),
            "States.A: Timestamp must be an ISO-8601 timestamp",
        ),
        (
            states(A={"Type": "Fail", "Error": "x", "ErrorPath": "$.e"}),
            "only one of Error, ErrorPath",
        ),
        (
            states(C={"Type": "Choice", "Choices": []}),
            "States.C: Choices must be a non-empty array",
        ),
        (
            states(
                Choose={
                    "Type": "Choice",
                    "Choices": [{"Variable": "x", "IsNull": True, "Next": "Choose"}],
                }
            ),
            'States.Choose.Choices[0]: Variable must be a JSONPath starting with "$"',
        ),
        (
            states(C={"Type": "Choice", "Choices": [{"Variable": "$.x", "Next": "C"}]}),
            "States.C.Choices[0]: a choice rule needs exactly one comparison operator",
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "NumericEquals": "1", "Next": "C"}],
                }
            ),
            "States.C.Choices[0]: NumericEquals must be a number",
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "TimestampEquals": "yesterday", "Next": "C"}],
                }
            ),
            "TimestampEquals must be an ISO-8601 timestamp",
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "StringEqualsPath": "x", "Next": "C"}],
                }
            ),
            'StringEqualsPath must be a JSONPath starting with "$"',
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "Choices": [
                        {"And": [{"Variable": "$.x", "IsNull": True, "Next": "C"}], "Next": "C"}
                    ],
                }
            ),
            "States.C.Choices[0].And[0]: nested choice rules cannot have Next",
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "Choices": [{"Not": {"Variable": "$.x", "Bogus": 1}, "Next": "C"}],
                }
            ),
            "unknown field 'Bogus' in a choice rule",
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "C"}],
                    "Default": "Z",
                }
            ),
            "States.C: Default refers to an unknown state 'Z'",
        ),
        (
            states(
                C={
                    "Type": "Choice",
                    "QueryLanguage": "JSONata",
                    "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "C"}],
                }
            ),
            "is not valid in a JSONata choice rule",
        ),
        (
            states(
                A={
                    "Type": "Pass",
                    "End": True,
                    "QueryLanguage": "JSONata",
                    "Output": "{% $states.input. %}",
                }
            ),
            "States.A: Output: invalid JSONata expression",
        ),
        (
            states(A={"Type": "Pass", "End": True, "QueryLanguage": "JSONata", "Output": "{% 1 "}),
            'a JSONata expression must be written "{% ... %}"',
        ),
        (
            states(A={"Type": "Pass", "End": True, "QueryLanguage": "JSONata", "Parameters": {}}),
            "field 'Parameters' is not supported in JSONata states",
        ),
        (
            states(P={"Type": "Parallel", "End": True, "Branches": []}),
            "States.P: Branches must be a non-empty array",
        ),
        (
            states(
                P={
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass"}}}],
                }
            ),
            'States.P.Branches[0].States.X: a non-terminal state needs "Next"',
        ),
        (
            states(M={"Type": "Map", "End": True}),
            "States.M: one of ItemProcessor, Iterator is required",
        ),
        (
            states(
                M={
                    "Type": "Map",
                    "End": True,
                    "Iterator": {"StartAt": "X", "States": {"X": PASS_END}},
                    "MaxConcurrency": -1,
                }
            ),
            "MaxConcurrency must be a non-negative integer",
        ),
        (
            states(
                M={
                    "Type": "Map",
                    "End": True,
                    "ItemProcessor": {
                        "StartAt": "X",
                        "States": {"X": PASS_END},
                        "ProcessorConfig": {"Mode": "FAST"},
                    },
                }
            ),
            "ProcessorConfig.Mode must be",
        ),
        (
            states(
                M={
                    "Type": "Map",
                    "End": True,
                    "ItemProcessor": {
                        "StartAt": "X",
                        "States": {"X": {"Type": "Pass", "Next": "Out"}},
                    },
                },
                Out=PASS_END,
            ),
            "States.M.ItemProcessor.States.X: Next refers to an unknown state 'Out'",
        ),
        (
            states(
                M={
                    "Type": "Map",
                    "End": True,
                    "ToleratedFailurePercentage": 101,
                    "Iterator": {"StartAt": "X", "States": {"X": PASS_END}},
                }
            ),
            "ToleratedFailurePercentage must be a number between 0 and 100",
        ),
    ],
)
def test_invalid_definitions(definition: Any, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        validate(definition)
    assert message in str(info.value)
    # execute validates before running
    with pytest.raises(DefinitionError):
        execute(definition, {})


def test_definition_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="StartAt"):
        validate({"States": {"A": PASS_END}})


def test_valid_definitions_with_every_state_type() -> None:
    definition = {
        "Comment": "all types",
        "Version": "1.0",
        "TimeoutSeconds": 60,
        "StartAt": "Pass",
        "States": {
            "Pass": {"Type": "Pass", "Next": "Task"},
            "Task": {
                "Type": "Task",
                "Resource": "r",
                "Retry": [{"ErrorEquals": ["X"]}, {"ErrorEquals": ["States.ALL"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Fail"}],
                "Next": "Choice",
            },
            "Choice": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "Wait"}],
                "Default": "Succeed",
            },
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Parallel"},
            "Parallel": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "B", "States": {"B": PASS_END}}],
                "Next": "Map",
            },
            "Map": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "I", "States": {"I": PASS_END}},
                "Next": "Succeed",
            },
            "Succeed": {"Type": "Succeed"},
            "Fail": {"Type": "Fail"},
        },
    }
    sm = validate(definition)
    assert set(sm.states) == set(definition["States"])
    assert sm.timeout_seconds == 60
