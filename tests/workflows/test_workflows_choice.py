"""Every JSONPath choice comparator, with type mismatches and missing values."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.helpers import machine, output, run_machine


def decide(rule: dict[str, Any], data: Any) -> bool:
    definition = machine(
        ("C", {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"}),
        ("Yes", {"Type": "Pass", "Result": True, "End": True}),
        ("No", {"Type": "Pass", "Result": False, "End": True}),
    )
    result = output(definition, data)
    assert isinstance(result, bool)
    return result


@pytest.mark.parametrize(
    ("op", "value", "data", "expected"),
    [
        ("StringEquals", "a", "a", True),
        ("StringEquals", "1", 1, False),
        ("StringLessThan", "b", "a", True),
        ("StringGreaterThan", "b", "a", False),
        ("StringLessThanEquals", "a", "a", True),
        ("StringGreaterThanEquals", "a", "b", True),
        ("StringMatches", "log-*.txt", "log-2024.txt", True),
        ("StringMatches", "log-*.txt", "log-2024.csv", False),
        ("StringMatches", "a\\*b", "a*b", True),
        ("StringMatches", "a\\*b", "axxb", False),
        ("StringMatches", "back\\\\slash*", "back\\slash!", True),
        ("NumericEquals", 1, 1.0, True),
        ("NumericEquals", 1, "1", False),
        ("NumericEquals", 1, True, False),
        ("NumericLessThan", 2, 1.5, True),
        ("NumericGreaterThan", 2, 2, False),
        ("NumericLessThanEquals", 2, 2, True),
        ("NumericGreaterThanEquals", 2, 3, True),
        ("BooleanEquals", False, False, True),
        ("BooleanEquals", False, 0, False),
        ("TimestampEquals", "2024-01-01T01:00:00+01:00", "2024-01-01T00:00:00Z", True),
        ("TimestampLessThan", "2024-01-01T00:00:01Z", "2024-01-01T00:00:00.5Z", True),
        ("TimestampGreaterThan", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00", False),
        ("TimestampLessThanEquals", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", True),
        ("TimestampGreaterThanEquals", "2024-01-01T00:00:00Z", "2023-12-31T23:59:59Z", False),
        ("IsNull", True, None, True),
        ("IsNull", False, None, False),
        ("IsNumeric", True, 1.5, True),
        ("IsNumeric", True, "1.5", False),
        ("IsString", True, "", True),
        ("IsBoolean", True, 0, False),
        ("IsTimestamp", True, "2024-02-29T10:00:00.123456789Z", True),
        ("IsTimestamp", True, "2024-02-30T10:00:00Z", False),
        ("IsTimestamp", False, "nope", True),
    ],
)
def test_comparators(op: str, value: Any, data: Any, expected: bool) -> None:
    assert decide({"Variable": "$.v", op: value}, {"v": data}) is expected


@pytest.mark.parametrize(
    ("op", "v", "w", "expected"),
    [
        ("StringEqualsPath", "a", "a", True),
        ("StringLessThanPath", "a", "b", True),
        ("NumericEqualsPath", 3, 3.0, True),
        ("NumericGreaterThanPath", 3, "2", False),
        ("NumericLessThanEqualsPath", 3, 3, True),
        ("BooleanEqualsPath", True, True, True),
        ("TimestampEqualsPath", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z", True),
        ("TimestampGreaterThanEqualsPath", "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z", True),
    ],
)
def test_path_comparators(op: str, v: Any, w: Any, expected: bool) -> None:
    assert decide({"Variable": "$.v", op: "$.w"}, {"v": v, "w": w}) is expected


def test_is_present() -> None:
    assert decide({"Variable": "$.v", "IsPresent": True}, {"v": None}) is True
    assert decide({"Variable": "$.v", "IsPresent": True}, {}) is False
    assert decide({"Variable": "$.v", "IsPresent": False}, {}) is True
    assert decide({"Variable": "$.l[?(@ > 5)]", "IsPresent": True}, {"l": [1]}) is False


def test_boolean_combinators() -> None:
    rule = {
        "Or": [
            {
                "And": [
                    {"Variable": "$.a", "NumericGreaterThan": 0},
                    {"Variable": "$.a", "NumericLessThan": 10},
                ]
            },
            {"Not": {"Variable": "$.b", "StringEquals": "no"}},
        ]
    }
    assert decide(rule, {"a": 5, "b": "no"}) is True
    assert decide(rule, {"a": 50, "b": "no"}) is False
    assert decide(rule, {"a": 50, "b": "yes"}) is True


def test_variables_in_choice_rules() -> None:
    definition = machine(
        ("Set", {"Type": "Pass", "Assign": {"limit": 5}}),
        (
            "C",
            {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThanPath": "$limit", "Next": "Big"}],
                "Default": "Small",
            },
        ),
        ("Big", {"Type": "Pass", "Result": "big", "End": True}),
        ("Small", {"Type": "Pass", "Result": "small", "End": True}),
    )
    assert output(definition, {"n": 6}) == "big"
    assert output(definition, {"n": 5}) == "small"


def test_missing_variable_is_a_runtime_error() -> None:
    definition = machine(
        (
            "C",
            {
                "Type": "Choice",
                "Choices": [{"Variable": "$.nope", "NumericEquals": 1, "Next": "E"}],
                "Default": "E",
            },
        ),
        ("E", {"Type": "Succeed"}),
    )
    ex = run_machine(definition, {})
    assert ex.error == "States.Runtime" and "Invalid path '$.nope'" in str(ex.cause)
