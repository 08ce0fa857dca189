"""EventBridge-compatible event patterns (aws event-ruler semantics), rule sets and input
transformers. See ``docs/patterns.md``.
"""

from __future__ import annotations

from setpiece.errors import PatternError
from setpiece.patterns._match import Pattern, compile
from setpiece.patterns._ruleset import RuleSet
from setpiece.patterns._transform import InputTransformer

__all__ = ["InputTransformer", "Pattern", "PatternError", "RuleSet", "compile"]
