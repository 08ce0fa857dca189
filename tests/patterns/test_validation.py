"""Every invalid pattern raises PatternError, and the message names where and what."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece.errors import PatternError as TreePatternError
from setpiece.patterns import PatternError, compile
from setpiece.patterns._parse import (
    MAX_DEPTH,
    MAX_PATH_LENGTH,
    MAX_PATH_SEGMENTS,
    MAX_SUBRULES,
    MAX_VALUES,
)


def test_pattern_error_is_the_one_from_the_exception_tree() -> None:
    assert PatternError is TreePatternError
    assert issubclass(PatternError, ValueError)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ([1], "pattern: must be a JSON object"),
        ({"a": 1}, "a: must be an array of match values or an object"),
        ({"a": "x"}, "a: must be an array"),
        ({"a": {}}, "a: objects in a pattern must not be empty"),
        ({"a": []}, "a: the array of match values must not be empty"),
        ({"a": {"b": [[1]]}}, "a.b: match values must be strings"),
        ({"a": [{}]}, "a: a match expression must have exactly one operator"),
        ({"a": [{"prefix": "x", "suffix": "y"}]}, "exactly one operator, got 2"),
        ({"a": [{"nope": 1}]}, "a: unknown match operator 'nope'"),
        ({"a": [{"prefix": 3}]}, "a: prefix needs a string"),
        ({"a": [{"prefix": {"wildcard": "x"}}]}, "a: prefix accepts only"),
        ({"a": [{"suffix": {"equals-ignore-case": 5}}]}, "suffix/equals-ignore-case needs a"),
        ({"a": [{"equals-ignore-case": ["x"]}]}, "equals-ignore-case needs a string"),
        ({"a": [{"exactly": 3}]}, "a: exactly needs a string"),
        ({"a": [{"wildcard": "a**b"}]}, "a: wildcard 'a**b' has consecutive '*' at position 1"),
        ({"a": [{"wildcard": "a\\b"}]}, "a backslash may only escape"),
        ({"a": [{"wildcard": "ab\\"}]}, "a backslash may only escape"),
        ({"a": [{"exists": "yes"}]}, "a: exists needs true or false"),
        ({"a": [{"cidr": "10.0.0.0"}]}, "needs exactly one '/'"),
        ({"a": [{"cidr": "10.0.0.0/x"}]}, "mask bits must be an integer"),
        ({"a": [{"cidr": "10.0.0.0/33"}]}, "mask bits must be between 0 and 31"),
        ({"a": [{"cidr": "300.0.0.0/8"}]}, "is not an IP address"),
        ({"a": [{"cidr": "::/128"}]}, "between 0 and 127 for IPv6"),
        ({"a": [{"anything-but": []}]}, "a: anything-but list must not be empty"),
        ({"a": [{"anything-but": ["x", 1]}]}, "only strings or only numbers"),
        ({"a": [{"anything-but": True}]}, "anything-but takes a string, a number"),
        ({"a": [{"anything-but": {"prefix": ""}}]}, "anything-but/prefix must not be empty"),
        ({"a": [{"anything-but": {"suffix": [""]}}]}, "anything-but/suffix must not be empty"),
        ({"a": [{"anything-but": {"prefix": 1}}]}, "anything-but/prefix needs strings"),
        ({"a": [{"anything-but": {"numeric": [">", 1]}}]}, "not 'numeric'"),
        ({"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]}, "exactly one operator"),
        ({"a": [{"anything-but": {"wildcard": "x**"}}]}, "consecutive '*'"),
        ({"p": [{"numeric": 5}]}, "p: numeric needs an array"),
        ({"p": [{"numeric": []}]}, "numeric must start with one of"),
        ({"p": [{"numeric": ["=="]}]}, "unknown numeric operator '=='"),
        ({"p": [{"numeric": ["<"]}]}, "numeric operator '<' needs a number, got nothing"),
        ({"p": [{"numeric": [">", "1"]}]}, "needs a number, got a string"),
        ({"p": [{"numeric": [">", True]}]}, "needs a number, got a boolean"),
        ({"p": [{"numeric": ["<", 1, ">", 0]}]}, "too many elements"),
        ({"p": [{"numeric": [">", 1, ">", 2]}]}, "must continue with < or <="),
        ({"p": [{"numeric": [">", 1, "<", 30, 5]}]}, "too many elements"),
        ({"detail": {"price": [{"numeric": [">", 5, "<", 5]}]}},
         "detail.price: numeric range lower bound must be less than upper bound"),
        ({"$or": [{"a": [1]}]}, "$or: needs at least 2 objects"),
        ({"$or": {"a": [1]}}, "$or: must be an array of objects"),
        ({"d": {"$or": [{"a": [1]}, [1]]}}, "d.$or[1]: must be an object"),
        ({"$or": [{"a": [1]}, {"numeric": [1]}]}, "numeric: 'numeric' is an operator name"),
    ],
)  # fmt: skip
def test_invalid_patterns(pattern: Any, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile(pattern)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": [1, 2 3]}', "pattern: invalid JSON"),
        ('{"a": ["\\d"]}', "pattern: invalid JSON"),
        ('{"x": [{"numeric": ["=", 1e400]}]}', "x: numeric bound 1e400 cannot be compared"),
        ('{"x": [{"numeric": ["<", 1E-400]}]}', "cannot be compared"),
        ('{"x": [{"numeric": ["<", 0.30000000000000001]}]}', "cannot be compared"),
        ('{"x": [{"anything-but": [1e999]}]}', "anything-but number 1e999 cannot be compared"),
    ],
)
def test_invalid_json_text(text: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile(text)
    assert message in str(caught.value)


def test_exact_numbers_without_a_double_are_still_valid() -> None:
    assert compile('{"x": [1e400]}').matches('{"x": 1e400}')


@pytest.mark.parametrize(
    "pattern",
    [
        {"a": [{"exists": True}]},
        {"a": [{"anything-but": {"equals-ignore-case": ""}}]},
        {"a": [{"anything-but": {"wildcard": ""}}]},
        {"a": [{"prefix": ""}]},
        {"a": [{"numeric": [">=", 0, "<", 1]}]},
        {"a": [{"numeric": ["=", 1e-320]}]},
        {"a": [{"cidr": "0.0.0.0/0"}]},
        {"numeric": [1]},  # operator names are field names outside $or
    ],
)
def test_valid_edge_patterns(pattern: Any) -> None:
    compile(pattern)


def test_limits() -> None:
    deep: dict[str, Any] = {"leaf": [1]}
    for _ in range(MAX_DEPTH):
        deep = {"x": deep}
    with pytest.raises(PatternError, match="nested more than 32 levels"):
        compile(deep)
    with pytest.raises(PatternError, match="more than 10000 match values"):
        compile({"a": list(range(MAX_VALUES + 1))})
    branches = [{"a": [i]} for i in range(11)]
    with pytest.raises(PatternError, match=f"more than {MAX_SUBRULES} combinations"):
        compile({"x": {"$or": branches}, "y": {"$or": branches}, "z": {"$or": branches}})
    with pytest.raises(PatternError, match=r"JSON text is \d+ long"):
        compile('{"a": ["' + "x" * (1 << 20) + '"]}')


def test_a_field_path_has_at_most_max_path_segments() -> None:
    """Dots in a key count as nesting: one key with 40,000 dots (far under the 1 MiB limit)
    is refused at once, naming the limit, instead of compiling for a time quadratic in its
    length (22 s before the limit existed) and failing later on the first few events."""
    with pytest.raises(PatternError, match=f"more than {MAX_PATH_SEGMENTS} segments"):
        compile({".".join(["a"] * 40_001): ["x"]})
    with pytest.raises(PatternError, match=r"^detail\.a\.a.*\.\.\.: field path has more than"):
        compile({"detail": {".".join(["a"] * 300_000): ["x"]}})  # 600 kB of key: still at once
    # nesting and dots add up
    nested: dict[str, Any] = {".".join(["a"] * (MAX_PATH_SEGMENTS - 2)): ["x"]}
    nested = {"b": {"c": nested}}
    compile(nested)  # exactly at the limit
    with pytest.raises(PatternError, match=f"more than {MAX_PATH_SEGMENTS} segments"):
        compile({"d": nested})
    with pytest.raises(PatternError, match=f"more than {MAX_PATH_SEGMENTS} segments"):
        compile({"b": {"$or": [{"c": nested["b"]["c"]}, {"d.e": nested["b"]["c"]}]}})


def test_the_longest_allowed_path_matches_event_after_event() -> None:
    """A path at the limit keeps working once the walk is specialised into generated code."""
    from setpiece.patterns import RuleSet

    key = ".".join(["a"] * MAX_PATH_SEGMENTS)
    pattern = compile({key: ["x"]})
    rules = RuleSet()
    rules.add("deep", {key: ["x"]})
    nested: dict[str, Any] = {"a": "x"}
    for _ in range(MAX_PATH_SEGMENTS - 1):
        nested = {"a": nested}
    for event in [{key: "x"}, nested] * 100:
        assert pattern.matches(event)
        assert rules.match(event) == {"deep"}
    assert not pattern.matches({key: "y"})


def test_a_field_path_has_at_most_max_path_length_characters() -> None:
    """Each field keeps its whole path: a 400 kB field name above 1,000 fields cost 1.7 s and
    400 MB before the limit (10,000 fields under a 500 kB name: minutes and gigabytes)."""
    with pytest.raises(PatternError, match=f"longer than {MAX_PATH_LENGTH} characters"):
        compile({"x" * 400_000: {f"k{i}": [1] for i in range(1_000)}})
    with pytest.raises(PatternError, match=r"^x{117}\.\.\.: field path is longer"):
        compile({"x" * (MAX_PATH_LENGTH - 1): {"ab": [1]}})
    at_limit = compile({"x" * (MAX_PATH_LENGTH - 2): {"a": [1]}})
    assert at_limit.matches({"x" * (MAX_PATH_LENGTH - 2): {"a": 1}})
