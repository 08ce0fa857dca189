from __future__ import annotations

import json
from typing import Any

from setpiece.patterns import RuleSet, compile


def matches(pattern: Any, event: Any) -> bool:
    """Match four ways (dict/JSON text x Pattern/RuleSet) and insist they agree."""
    direct = compile(pattern).matches(event)
    rules = RuleSet()
    rules.add("r", pattern)
    via_rules = rules.match(event) == {"r"}
    as_text = compile(json.dumps(pattern)).matches(json.dumps(event))
    assert direct == via_rules == as_text, (direct, via_rules, as_text)
    return direct
