"""The JSONPath evaluator (Jayway dialect as Step Functions uses it)."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece.workflows._paths import PathNotFound, PathSyntaxError, compile_path, set_result_path

DOC: dict[str, Any] = {
    "store": {
        "book": [
            {"title": "A", "price": 8, "tags": ["x"]},
            {"title": "B", "price": 12},
            {"title": "C", "price": 30, "isbn": "1"},
        ],
        "name": "shop",
    },
    "odd key": 1,
    "it's": 2,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.store.name", "shop"),
        ("$['store']['name']", "shop"),
        ('$["odd key"]', 1),
        ("$['it\\'s']", 2),
        ("$.store.book[0].title", "A"),
        ("$.store.book[-1].title", "C"),
        ("$.store.book.length()", 3),
    ],
)
def test_definite_paths(path: str, expected: Any) -> None:
    p = compile_path(path)
    assert p.definite
    assert p.evaluate(DOC) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.store.book[*].title", ["A", "B", "C"]),
        ("$..title", ["A", "B", "C"]),
        ("$.store.book[1:].title", ["B", "C"]),
        ("$.store.book[:2].price", [8, 12]),
        ("$.store.book[0,2].title", ["A", "C"]),
        ("$.store.book[?(@.price < 10)].title", ["A"]),
        ("$.store.book[?(@.price >= 12 && @.title != 'C')].title", ["B"]),
        ("$.store.book[?(@.isbn)].title", ["C"]),
        ("$.store.book[?(!(@.price > 10))].title", ["A"]),
        ("$.store.book[?(@.title in ['A','C'])].price", [8, 30]),
        ("$.store.book[?(@.title =~ /[AB]/)].price", [8, 12]),
        ("$.store.book[?(@.price > 100)]", []),
        ("$.store['name','nope']", ["shop"]),
    ],
)
def test_indefinite_paths_return_lists(path: str, expected: Any) -> None:
    p = compile_path(path)
    assert not p.definite
    assert p.evaluate(DOC) == expected


def test_missing_paths_use_jayway_wording() -> None:
    with pytest.raises(PathNotFound, match=r"No results for path: \$\['store'\]\['nope'\]"):
        compile_path("$.store.nope").evaluate(DOC)
    with pytest.raises(PathNotFound, match=r"Missing property in path \$\['nope'\]"):
        compile_path("$.nope.deeper").evaluate(DOC)


def test_roots() -> None:
    assert compile_path("$$.Execution.Id").is_context
    assert compile_path("$myVar.field").variable == "myVar"
    assert compile_path("$").variable is None


@pytest.mark.parametrize("bad", ["store", "$.", "$[", "$['x'", "$.a[?(@.x ==)]", "$[1:2:0]"])
def test_syntax_errors(bad: str) -> None:
    with pytest.raises(PathSyntaxError):
        compile_path(bad)


def test_set_result_path_copies_and_creates() -> None:
    doc = {"a": {"b": 1}, "l": [0, 1]}
    out = set_result_path(doc, compile_path("$.a.c.d"), 5)
    assert out == {"a": {"b": 1, "c": {"d": 5}}, "l": [0, 1]}
    assert doc == {"a": {"b": 1}, "l": [0, 1]}
    assert set_result_path(doc, compile_path("$.l[1]"), "x")["l"] == [0, "x"]
    assert set_result_path(doc, compile_path("$"), 3) == 3
    with pytest.raises(ValueError):
        set_result_path([1], compile_path("$.x"), 1)
