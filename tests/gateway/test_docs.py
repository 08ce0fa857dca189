"""docs/gateway.md: its python blocks run, in order, as one script."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def test_the_gateway_page_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "gateway_doc"}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
