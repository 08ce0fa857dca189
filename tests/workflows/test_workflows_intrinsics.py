"""Every intrinsic function, through Parameters, plus the call parser."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from setpiece.workflows._intrinsics import IntrinsicSyntaxError, parse
from tests.workflows.helpers import machine, one, run_machine


def call(expr: str, data: Any = None) -> Any:
    return one({"Type": "Pass", "Parameters": {"r.$": expr}}, data or {})["r"]


@pytest.mark.parametrize(
    ("expr", "data", "expected"),
    [
        ("States.Format('{} + {} = {}', 1, 2.5, $.s)", {"s": "x"}, "1 + 2.5 = x"),
        (
            "States.Format('{} {} {}', $.o, $.l, $.n)",
            {"o": {"a": 1, "b": []}, "l": [1, "x"], "n": None},
            "{a=1, b=[]} [1, x] null",
        ),
        ("States.Format('braces \\{\\} and quote \\' ok')", {}, "braces {} and quote ' ok"),
        ("States.StringToJson($.s)", {"s": '{"a":[1,true]}'}, {"a": [1, True]}),
        ("States.StringToJson($.s)", {"s": "   "}, None),
        ("States.JsonToString($.o)", {"o": {"a": [1, "é"]}}, '{"a":[1,"é"]}'),
        (
            "States.Array(1, 'two', $.x, null, true)",
            {"x": {"k": 1}},
            [1, "two", {"k": 1}, None, True],
        ),
        ("States.Array()", {}, []),
        ("States.ArrayPartition($.a, 2)", {"a": [1, 2, 3, 4, 5]}, [[1, 2], [3, 4], [5]]),
        ("States.ArrayContains($.a, $.v)", {"a": [1, {"k": [1]}], "v": {"k": [1]}}, True),
        ("States.ArrayContains($.a, true)", {"a": [1, 0]}, False),
        ("States.ArrayRange(1, 9, 3)", {}, [1, 4, 7]),
        ("States.ArrayRange(5, 1, -2)", {}, [5, 3, 1]),
        ("States.ArrayGetItem($.a, 1)", {"a": ["x", "y"]}, "y"),
        ("States.ArrayLength($.a)", {"a": [1, 2, 3]}, 3),
        (
            "States.ArrayUnique($.a)",
            {"a": [1, 1, True, "1", {"a": 1}, {"a": 1}, 1.5]},
            [1, True, "1", {"a": 1}, 1.5],
        ),
        ("States.Base64Encode('hé')", {}, "aMOp"),
        ("States.Base64Decode('aMOp')", {}, "hé"),
        (
            "States.Hash('abc', 'SHA-256')",
            {},
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        ("States.Hash('abc', 'MD5')", {}, "900150983cd24fb0d6963f7d28e17f72"),
        (
            "States.JsonMerge($.a, $.b, false)",
            {"a": {"x": {"p": 1}, "y": 1}, "b": {"x": {"q": 2}}},
            {"x": {"q": 2}, "y": 1},
        ),
        (
            "States.JsonMerge($.a, $.b, true)",
            {"a": {"x": {"p": 1}}, "b": {"x": {"q": 2}}},
            {"x": {"p": 1, "q": 2}},
        ),
        ("States.MathAdd(1.5, -2.5)", {}, 0),  # Java Math.round: 2 + -2
        ("States.MathAdd($.a, 3)", {"a": -1.5}, 2),
        ("States.StringSplit('a,b;;c', ',;')", {}, ["a", "b", "c"]),
        ("States.StringSplit($.s, ' ')", {"s": "  lead and trail  "}, ["lead", "and", "trail"]),
        ("States.ArrayLength(States.StringSplit(States.Format('{},{}', 'a', 'b'), ','))", {}, 2),
        ("States.Format('{}', $$.State.Name)", {}, "S"),
    ],
)
def test_intrinsics(expr: str, data: Any, expected: Any) -> None:
    assert call(expr, data) == expected


def test_math_random_and_uuid() -> None:
    for _ in range(20):
        assert 3 <= call("States.MathRandom(3, 6)") < 6
    assert call("States.MathRandom(0, 1000, 7)") == call("States.MathRandom(0, 1000, 7)")
    u = call("States.UUID()")
    assert uuid.UUID(u).version == 4


def test_intrinsics_in_assign_fail_and_variables() -> None:
    definition = machine(
        ("A", {"Type": "Pass", "Assign": {"n": 41, "t.$": "States.Format('v{}', 1)"}}),
        ("B", {"Type": "Pass", "Parameters": {"r.$": "States.MathAdd($n, 1)", "t.$": "$t"}}),
    )
    assert run_machine(definition).output == {"r": 42, "t": "v1"}


@pytest.mark.parametrize(
    "expr",
    [
        "States.ArrayPartition($.a, 0)",
        "States.ArrayLength($.s)",
        "States.Format('{} {}', 1)",
        "States.Hash('x', 'SHA-3')",
        "States.Base64Decode('%%%')",
        "States.StringToJson('{nope')",
        "States.ArrayRange(0, 2000, 1)",
    ],
)
def test_bad_arguments_are_intrinsic_failures(expr: str) -> None:
    ex = run_machine(
        machine(("S", {"Type": "Pass", "Parameters": {"r.$": expr}})), {"a": [1], "s": "x"}
    )
    assert ex.error == "States.IntrinsicFailure"
    assert re.match(
        r"An error occurred while executing the state 'S' .*Invalid arguments in States\.",
        str(ex.cause),
    )


def test_parser_handles_nesting_escapes_and_paths_with_brackets() -> None:
    c = parse("States.Format('it\\'s {}, (a,b)', States.Array($.a['x,y'], $$.Map.Item.Index))")
    assert c.name == "States.Format" and len(c.args) == 2


@pytest.mark.parametrize(
    "bad",
    [
        "States.Nope(1)",
        "States.Format('x'",
        "States.Format('x') trailing",
        "States.Array(1 2)",
        "States.Array(foo)",
    ],
)
def test_parser_rejects(bad: str) -> None:
    with pytest.raises(IntrinsicSyntaxError):
        parse(bad)
