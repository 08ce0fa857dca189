"""``setpiece plan`` / ``setpiece apply`` on SQLite and on NATS JetStream + PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from setpiece.cli.app import app
from setpiece.engine import Engine, open_engine
from tests.conftest import ENGINES, fresh_urls

APP = "tests.cli.plan_app"


@pytest.fixture(params=ENGINES)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The --engine / --store options: an SQLite file, or NATS + PostgreSQL (``servers``)."""
    if request.param == "memory":
        return ["--engine", f"sqlite:///{tmp_path / 'plan.db'}"]
    url, store = fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))
    return ["--engine", url, "--store", store]


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def plan(version: str, urls: list[str]) -> dict[tuple[str, str], str]:
    """{(kind, name): action} from ``setpiece plan --json``."""
    import json

    result = cli("plan", f"{APP}:{version}", *urls, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    return {(c["kind"], c["name"]): c["action"] for c in data["changes"]}


def engine_state(urls: list[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    async def main() -> tuple[dict[str, Any], list[tuple[str, str]]]:
        engine: Engine = await open_engine(urls[1], store=urls[3] if len(urls) > 2 else None)
        try:
            streams = {s.name: (s.partitions, s.retention) for s in await engine.streams()}
            return streams, sorted(await engine.groups())
        finally:
            await engine.close()

    return asyncio.run(main())


def append(urls: list[str], stream: str) -> None:
    async def main() -> None:
        engine: Engine = await open_engine(urls[1], store=urls[3] if len(urls) > 2 else None)
        try:
            await engine.append(stream, [("k", b"record")])
        finally:
            await engine.close()

    asyncio.run(main())


V1_GROUPS = {"counter.count@orders", "audit.note@bus.default",
             "rule.default.big_orders.stream:big@bus.default"}


def test_plan_apply_modify_delete_and_blocked(urls: list[str], tmp_path: Path) -> None:
    # A new engine: everything is to add, and plan creates nothing (not even the storage).
    first = plan("v1", urls)
    assert set(first.values()) == {"add"}
    assert {n for k, n in first if k == "stream"} == {
        "setpiece.deadletters", "bus.default", "orders", "big"}
    assert {n for k, n in first if k == "group"} == V1_GROUPS
    assert [k for k in first if k[0] == "storage"]
    if urls[1].startswith("sqlite"):
        assert not (tmp_path / "plan.db").exists()
    assert plan("v1", urls) == first  # still nothing there

    result = cli("apply", f"{APP}:v1", *urls)
    assert result.exit_code == 0, result.output
    assert "applied 8 change(s)" in result.output
    assert set(plan("v1", urls).values()) == {"unchanged"}
    streams, groups = engine_state(urls)
    assert streams["orders"] == (2, None) and streams["big"] == (1, None)
    assert {f"{g}@{s}" for g, s in groups} == V1_GROUPS

    # v2: orders gets a retention, refunds comes, big / its rule / audit go.
    second = plan("v2", urls)
    assert second[("stream", "orders")] == "modify"
    assert second[("stream", "refunds")] == "add"
    assert second[("stream", "big")] == "delete"
    assert second[("group", "audit.note@bus.default")] == "delete"
    assert second[("group", "rule.default.big_orders.stream:big@bus.default")] == "delete"
    assert second[("group", "counter.count@orders")] == "unchanged"
    text = cli("plan", f"{APP}:v2", *urls).output
    assert "retention forever -> 3600s" in text and "- delete" in text

    # big holds a record: without --allow-delete, apply refuses, names it, and changes nothing.
    append(urls, "big")
    text = cli("plan", f"{APP}:v2", *urls).output
    assert "holds 1 record(s): needs --allow-delete" in text
    result = cli("apply", f"{APP}:v2", *urls)
    assert result.exit_code == 2, result.output
    assert "refusing to delete what holds data: stream big (1 record(s))" in result.output
    assert "Nothing was changed" in result.output
    streams, groups = engine_state(urls)
    assert streams["orders"] == (2, None) and "refunds" not in streams
    assert {f"{g}@{s}" for g, s in groups} == V1_GROUPS

    # --allow-delete asks first; "no" deletes nothing.
    result = cli("apply", f"{APP}:v2", *urls, "--allow-delete", input="n\n")
    assert result.exit_code == 2 and "not confirmed" in result.output
    assert "big" in engine_state(urls)[0]
    result = cli("apply", f"{APP}:v2", *urls, "--allow-delete", "--yes")
    assert result.exit_code == 0, result.output
    streams, groups = engine_state(urls)
    assert "big" not in streams
    assert streams["orders"] == (2, 3600.0) and streams["refunds"] == (3, None)
    assert {f"{g}@{s}" for g, s in groups} == {"counter.count@orders"}
    assert set(plan("v2", urls).values()) == {"unchanged"}

    # v3 changes a stream's partitions: shown as blocked, and apply refuses, changing nothing.
    third = plan("v3", urls)
    assert third[("stream", "orders")] == "blocked"
    result = cli("apply", f"{APP}:v3", *urls, "--yes")
    assert result.exit_code == 2 and "cannot change in place" in result.output
    assert engine_state(urls)[0]["orders"] == (2, 3600.0)
