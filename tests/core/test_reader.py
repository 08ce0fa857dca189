"""The stream reader's matching: the memo of top-level attributes gives RuleSet's answers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setpiece.engine import StreamSpec, open_engine
from setpiece.patterns import RuleSet, compile
from setpiece.runtime.reader import StreamReader, _Rules

PATTERNS: dict[str, dict[str, Any]] = {
    "placed": {"type": ["order_placed"]},
    "one": {"priority": [1]},
    "flag": {"priority": [True]},
    "no-subject": {"subject": [{"exists": False}]},
    "null-subject": {"subject": [None]},
    "big": {"priority": [{"numeric": [">", 5]}]},
    "audit": {"type": [{"prefix": "order_"}], "source": ["/shop"]},
}


def both(patterns: dict[str, dict[str, Any]]) -> tuple[_Rules, RuleSet]:
    memo, plain = _Rules(), RuleSet()
    for name, pattern in patterns.items():
        memo.add(name, compile(pattern))
        plain.add(name, pattern)
    return memo, plain


@pytest.mark.parametrize(
    "view",
    [
        {"type": "order_placed", "source": "/shop", "priority": 1},
        {"type": "order_placed", "source": "/shop", "priority": True},
        {"type": "order_placed", "source": "/shop", "priority": 1.0},
        {"type": "order_paid", "source": "/shop", "priority": 7, "subject": None},
        {"type": "order_paid", "source": "/shop", "subject": "o-1"},
        {"type": "order_paid", "source": "/shop", "priority": [1, 9]},  # a list: no memo
        {"type": "order_paid", "source": "/other", "priority": {"level": 1}},
    ],
)
def test_memo_answers_as_the_rule_set_does(view: dict[str, Any]) -> None:
    memo, plain = both(PATTERNS)
    for _ in range(2):  # the second time from the memo
        assert memo.match(dict(view)) == plain.match(dict(view))


def test_true_and_one_are_remembered_apart() -> None:
    memo, _ = both(PATTERNS)
    assert memo.match({"priority": 1}) == {"one", "no-subject"}
    assert memo.match({"priority": True}) == {"flag", "no-subject"}
    assert memo.match({"priority": 1}) == {"one", "no-subject"}


def test_absent_and_null_are_remembered_apart() -> None:
    memo, _ = both(PATTERNS)
    assert memo.match({"type": "x"}) == {"no-subject"}
    assert memo.match({"type": "x", "subject": None}) == {"null-subject"}
    assert memo.match({"type": "x"}) == {"no-subject"}


def test_a_nested_path_turns_the_memo_off_and_stays_right() -> None:
    memo, plain = both({**PATTERNS, "vip": {"detail": {"tier": ["gold"]}}})
    view = {"type": "order_placed", "detail": {"tier": "gold"}}
    assert memo.match(view) == plain.match(view) == {"placed", "vip", "no-subject"}
    view = {"type": "order_placed", "detail": {"tier": "bronze"}}
    assert memo.match(view) == plain.match(view) == {"placed", "no-subject"}


def test_adding_a_rule_forgets_what_was_remembered() -> None:
    memo, _ = both({"placed": {"type": ["order_placed"]}})
    assert memo.match({"type": "order_paid"}) == set()
    memo.add("paid", compile({"type": ["order_paid"]}))
    assert memo.match({"type": "order_paid"}) == {"paid"}


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 9), st.sampled_from([1.0, 6.5, "o-1", "order_placed"])
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["type", "source", "priority", "subject"]),
                                st.one_of(scalars, st.lists(scalars, max_size=2))),
                max_size=6))  # fmt: skip
def test_memo_equals_rule_set_on_any_sequence_of_records(views: list[dict[str, Any]]) -> None:
    memo, plain = both(PATTERNS)
    for view in views + views:
        assert memo.match(dict(view)) == plain.match(dict(view))


def test_reader_marks_each_record_with_the_consumers_it_matches(run: Any) -> None:
    async def scenario() -> None:
        engine = await open_engine("memory")
        try:
            await engine.create_stream(StreamSpec("s", 1))
            reader = StreamReader(engine, "s")
            reader.follow("billing", compile({"type": ["order_placed"]}))
            reader.follow("audit", compile({"source": ["/shop"]}))
            reader.follow("everything", None)
            records = [
                b'{"specversion":"1.0","id":"1","source":"/shop","type":"order_placed"}',
                b'{"specversion":"1.0","id":"2","source":"/shop","type":"order_paid"}',
                b'{"specversion":"1.0","id":"3","source":"/crm","type":"order_placed"}',
                b"not json",
            ]
            await engine.append("s", [(None, r) for r in records])
            entries = await reader.read(0, 0, 10)
            assert [set(e.matched) for e in entries] == [
                {"billing", "audit"}, {"audit"}, {"billing"}, set()
            ]
            assert entries[3].error is not None
        finally:
            await engine.close()

    run(scenario())


def test_the_window_keeps_only_what_a_consumer_of_the_partition_still_needs(run: Any) -> None:
    """Records every consumer has read past leave the window: a long run of caught-up
    consumers holds almost nothing, however many records flowed."""

    async def main() -> None:
        engine = await open_engine("memory")
        try:
            await engine.create_stream(StreamSpec("s", 1))
            await engine.append("s", [("k", b'{"type": "t", "source": "x", "id": "%d"}' % n)
                                      for n in range(1000)])
            reader = StreamReader(engine, "s")
            reader.follow("fast", None)
            reader.follow("slow", None)
            await reader.read(0, 0, 100, "fast")
            await reader.read(0, 0, 100, "slow")
            for start in range(100, 1000, 100):
                await reader.read(0, start, 100, "fast")
            held = sorted(reader._window[0])
            assert held[0] == 0 and len(held) == 1000, "the slow consumer still needs them"
            await reader.read(0, 900, 100, "slow")  # the slow one catches up
            await reader.read(0, 1000, 100, "fast")
            assert sorted(reader._window[0]) == list(range(900, 1000))
            reader.forget("slow")  # it left: nothing is held for it
            await reader.read(0, 1000, 100, "fast")
            assert reader._window[0] == {}
        finally:
            await engine.close()

    run(main())
