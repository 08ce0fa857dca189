"""Every ```python block of docs/patterns.md runs, on its own, and its asserts hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "patterns.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.S | re.M)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_block_runs(number: int) -> None:
    code = compile(BLOCKS[number], f"docs/patterns.md block {number + 1}", "exec")
    exec(code, {"__name__": f"docs_patterns_{number}"})
