"""``setpiece inspect`` lists the stack's views, with what they read and write and their lag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from setpiece import Event
from setpiece.cli.app import app
from tests.views.views_app import stack


def test_inspect_lists_views(tmp_path: Path, run: Any) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"

    async def once() -> None:
        async with stack.start(engine=db) as rt:
            await rt.publish(Event(type="o", source="t", partitionkey="k"), stream="orders")
            await rt.drain()

    run(once())
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", "tests.views.views_app:stack", "--engine", db,
                                 "--json"])
    assert result.exit_code == 0, result.output
    views = {v["name"]: v for v in json.loads(result.output)["views"]}
    assert views["profile_table"]["kind"] == "Table"
    assert views["profile_table"]["reads"] == ["profiles"]
    assert views["enrich"]["table"] == "profile_table"
    assert views["enrich"]["emit_to"] == "enriched"
    assert views["per_customer"]["window"] == "Tumbling(size=60, grace=0.0)"
    assert all(v["lag"] == 0 for v in views.values())
    text = runner.invoke(app, ["inspect", "tests.views.views_app:stack", "--engine", db])
    assert text.exit_code == 0 and "views" in text.output and "per_customer" in text.output
