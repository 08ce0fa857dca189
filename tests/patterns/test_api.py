from __future__ import annotations

import setpiece.patterns


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert set(setpiece.patterns.__all__) == {
        "InputTransformer",
        "Pattern",
        "PatternError",
        "RuleSet",
        "compile",
    }
    for name in setpiece.patterns.__all__:
        assert getattr(setpiece.patterns, name).__doc__, name
