"""Each operator on single values: ``{"v": [P]}`` against ``{"v": value}``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.patterns.helpers import matches


def one(expr: Any, value: Any) -> bool:
    return matches({"v": [expr]}, {"v": value})


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ("blue", "blue", True),
        ("blue", "Blue", False),
        ("blue", "blue ", False),
        ("", "", True),
        ("5", 5, False),  # a string never equals a number
        (5, "5", False),
        (5, 5, True),
        (5, 5.0, True),  # numbers compare by value
        (300, 3e2, True),
        (0.1, 0.1, True),
        (-0.5, -0.5, True),
        (True, True, True),
        (True, "true", False),
        (True, 1, False),  # booleans are not numbers
        (1, True, False),
        (False, 0, False),
        (None, None, True),
        (None, "null", False),
        (None, False, False),
        ("ünïcødé ✓", "ünïcødé ✓", True),
    ],
)
def test_exact_values(expr: Any, value: Any, expected: bool) -> None:
    assert one(expr, value) is expected


def test_exactly_is_a_plain_string_match() -> None:
    assert one({"exactly": "10.0.0.1"}, "10.0.0.1")
    assert not one({"exactly": "abc"}, "ABC")


def test_several_values_are_alternatives() -> None:
    pattern = {"state": ["running", "pending", 3]}
    assert matches(pattern, {"state": "pending"})
    assert matches(pattern, {"state": 3.0})
    assert not matches(pattern, {"state": "stopped"})


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ({"prefix": "arn:aws"}, "arn:aws:s3", True),
        ({"prefix": "arn:aws"}, "arn:aw", False),
        ({"prefix": ""}, "anything", True),
        ({"prefix": ""}, 5, False),
        ({"prefix": "1"}, 12, False),  # prefixes only apply to strings
        ({"suffix": ".png"}, "cat.png", True),
        ({"suffix": ".png"}, "cat.PNG", False),
        ({"suffix": "5"}, 15, False),
        ({"equals-ignore-case": "AlIcE"}, "alice", True),
        ({"equals-ignore-case": "alice"}, "ALICE", True),
        ({"equals-ignore-case": "alice"}, "alicia", False),
        ({"equals-ignore-case": "straße"}, "STRASSE", True),  # ß has SS as upper case
        ({"equals-ignore-case": "ÉTÉ"}, "été", True),
        ({"equals-ignore-case": "k"}, "\u212a", False),  # Kelvin sign is not a k
        ({"equals-ignore-case": "5"}, 5, False),
        ({"prefix": {"equals-ignore-case": "ERROR:"}}, "error: disk", True),
        ({"prefix": {"equals-ignore-case": "ERROR:"}}, "warn: error:", False),
        ({"prefix": {"equals-ignore-case": "Ölf"}}, "ölfass", True),
        ({"suffix": {"equals-ignore-case": ".JPG"}}, "me.jpg", True),
        ({"suffix": {"equals-ignore-case": ".JPG"}}, "me.jpeg", False),
        ({"suffix": {"equals-ignore-case": "ÉE"}}, "café", False),
        ({"suffix": {"equals-ignore-case": "FÉ"}}, "café", True),
    ],
)
def test_string_operators(expr: Any, value: Any, expected: bool) -> None:
    assert one(expr, value) is expected


@pytest.mark.parametrize(
    ("wildcard", "value", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("*", 5, False),
        ("a*", "abc", True),
        ("*c", "abc", True),
        ("a*c", "ac", True),
        ("a*c", "abbbc", True),
        ("a*c", "abcd", False),
        ("a*b*c", "a-b-c", True),
        ("a*b*c", "acb", False),
        ("*ab*ab*", "xabyab", True),
        ("*ab*ab*", "xaby", False),
        ("abc", "abc", True),
        ("abc", "abcd", False),
        (r"a\*c", "a*c", True),  # an escaped star is a literal star
        (r"a\*c", "abc", False),
        (r"a\\*", "a\\xyz", True),  # an escaped backslash, then a wildcard
        (r"\**", "*star", True),
        (r"\**", "star", False),
        ("dev-*.example.com", "dev-1.example.com", True),
    ],
)
def test_wildcard(wildcard: str, value: Any, expected: bool) -> None:
    assert one({"wildcard": wildcard}, value) is expected


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ({"anything-but": "gold"}, "silver", True),
        ({"anything-but": "gold"}, "gold", False),
        ({"anything-but": "gold"}, 5, True),  # other types are "anything but"
        ({"anything-but": "gold"}, None, True),
        ({"anything-but": ["gold", "silver"]}, "silver", False),
        ({"anything-but": ["gold", "silver"]}, "bronze", True),
        ({"anything-but": 2}, 2.0, False),
        ({"anything-but": [1, 2.5]}, 2.5, False),
        ({"anything-but": [1, 2.5]}, 3, True),
        ({"anything-but": [1, 2.5]}, "1", True),
        ({"anything-but": {"prefix": "test-"}}, "test-1", False),
        ({"anything-but": {"prefix": "test-"}}, "prod-1", True),
        ({"anything-but": {"prefix": ["a", "b"]}}, "bx", False),
        ({"anything-but": {"prefix": "1"}}, 10, True),
        ({"anything-but": {"suffix": ".tmp"}}, "x.tmp", False),
        ({"anything-but": {"suffix": [".tmp", ".bak"]}}, "x.txt", True),
        ({"anything-but": {"equals-ignore-case": "GOLD"}}, "gold", False),
        ({"anything-but": {"equals-ignore-case": ["a", "b"]}}, "C", True),
        ({"anything-but": {"wildcard": "*.tmp"}}, "a.tmp", False),
        ({"anything-but": {"wildcard": ["*.tmp", "x*"]}}, "xa", False),
        ({"anything-but": {"wildcard": "*"}}, "a", False),
        ({"anything-but": {"wildcard": "*"}}, 1, True),
    ],
)
def test_anything_but(expr: Any, value: Any, expected: bool) -> None:
    assert one(expr, value) is expected


def test_anything_but_needs_a_value() -> None:
    assert not matches({"v": [{"anything-but": "x"}]}, {"w": "y"})


def test_anything_but_over_an_array_needs_one_other_element() -> None:
    pattern = {"v": [{"anything-but": "x"}]}
    assert matches(pattern, {"v": ["x", "y"]})
    assert not matches(pattern, {"v": ["x", "x"]})


@pytest.mark.parametrize(
    ("numeric", "value", "expected"),
    [
        (["=", 3], 3, True),
        (["=", 3], 3.0, True),
        (["=", 3], "3", False),
        (["=", 3], True, False),
        (["=", 0.1], 0.1, True),
        (["<", 10], 9.999999, True),
        (["<", 10], 10, False),
        (["<=", 10], 10, True),
        ([">", 10], 10, False),
        ([">=", 10], 10, True),
        ([">", 0, "<", 1], 0.5, True),
        ([">", 0, "<", 1], 0, False),
        ([">", 0, "<", 1], 1, False),
        ([">=", 0, "<=", 1], 0, True),
        ([">=", 0, "<=", 1], 1, True),
        ([">", -1e9, "<", -5], -10, True),
        ([">", 5e9], 5e11, True),  # the whole range of doubles is comparable
        (["<", -5e11], -5e12, True),
        (["<", 1e-6], 5e-7, True),
        ([">", 0.000001], 0.000002, True),
        (["=", 9007199254740992], 9007199254740992, True),
    ],
)
def test_numeric(numeric: list[Any], value: Any, expected: bool) -> None:
    assert one({"numeric": numeric}, value) is expected


def test_numbers_in_json_text_keep_their_spelling() -> None:
    from setpiece.patterns import compile

    equal = compile('{"v": [{"numeric": ["=", 300]}]}')
    for text in ("300", "300.0", "3e2", "3.0E+2", "300.000000"):
        assert equal.matches('{"v": ' + text + "}"), text
    # No double is exactly 0.30000000000000001: it is not comparable, only equal to its text.
    inexact = compile('{"v": [0.30000000000000001]}')
    assert inexact.matches('{"v": 0.30000000000000001}')
    assert not inexact.matches('{"v": 0.3}')
    assert not compile('{"v": [{"numeric": [">", 0]}]}').matches('{"v": 0.30000000000000001}')
    # Integers beyond 2**53 that a double cannot hold compare by their digits.
    big = compile('{"v": [12345678901234567891]}')
    assert big.matches('{"v": 12345678901234567891}')
    assert not big.matches('{"v": 12345678901234567890}')
    assert compile({"v": [2**70 + 1]}).matches({"v": 2**70 + 1})


@pytest.mark.parametrize(
    ("cidr", "value", "expected"),
    [
        ("10.0.0.0/24", "10.0.0.255", True),
        ("10.0.0.0/24", "10.0.1.0", False),
        ("10.0.0.7/24", "10.0.0.1", True),  # host bits of the block are ignored
        ("0.0.0.0/0", "255.255.255.255", True),
        ("192.168.1.1/31", "192.168.1.0", True),
        ("10.0.0.0/8", "10.1.2.3.4", False),
        ("10.0.0.0/8", "10.01.2.3", False),  # leading zeros are not an address
        ("10.0.0.0/8", 10, False),
        ("10.0.0.0/8", "::ffff:10.0.0.1", False),  # dotted IPv6 forms are not recognised
        ("10.0.0.0/8", "::ffff:a00:1", True),  # an IPv4-mapped IPv6 address is IPv4
        ("2001:db8::/32", "2001:db8:ffff::1", True),
        ("2001:db8::/32", "2001:db9::1", False),
        ("2001:db8::/32", "2001:0DB8:0000::0001", True),
        ("2001:db8::/32", "10.0.0.1", False),
        ("::/0", "::1", True),
    ],
)
def test_cidr(cidr: str, value: Any, expected: bool) -> None:
    assert one({"cidr": cidr}, value) is expected


def test_strings_that_are_ip_addresses_match_the_same_address() -> None:
    assert matches({"ip": ["2001:db8::1"]}, {"ip": "2001:0db8:0:0:0:0:0:1"})
    assert matches({"ip": ["10.0.0.1"]}, {"ip": "10.0.0.1"})
    assert not matches({"ip": ["10.0.0.1"]}, {"ip": "10.0.0.2"})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"v": "x"}, True),
        ({"v": None}, True),
        ({"v": ""}, True),
        ({"v": 0}, True),
        ({"v": False}, True),
        ({"v": ["a"]}, True),
        ({"v": []}, False),  # an empty array has no leaf
        ({"v": {}}, False),  # nor an empty object
        ({"v": {"w": 1}}, False),  # exists applies to leaves only
        ({}, False),
        ({"w": 1}, False),
    ],
)
def test_exists(event: dict[str, Any], expected: bool) -> None:
    assert matches({"v": [{"exists": True}]}, event) is expected
    assert matches({"v": [{"exists": False}]}, event) is (not expected)


def test_exists_false_or_a_value() -> None:
    pattern = {"tier": [{"exists": False}, "gold"]}
    assert matches(pattern, {})
    assert matches(pattern, {"tier": "gold"})
    assert not matches(pattern, {"tier": "silver"})
