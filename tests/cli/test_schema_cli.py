"""``setpiece schema discover|check|codegen``, ``setpiece asyncapi``, and schemas in ``plan``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
from typer.testing import CliRunner

from setpiece import Event, Stack
from setpiece.cli.app import app
from setpiece.schemas import Schema, is_compatible
from setpiece.schemas._validate import compile_validator
from tests.cli.schema_app import V1

APP = "tests.cli.schema_app"


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_plan_check_and_apply_guard_the_registry(tmp_path: Path) -> None:
    engine = ["--engine", f"sqlite:///{tmp_path / 'reg.db'}"]

    def plan(version: str) -> dict[str, str]:
        result = cli("plan", f"{APP}:{version}", *engine, "--json")
        assert result.exit_code == 0, result.output
        return {c["name"]: c["action"] for c in json.loads(result.output)["changes"]
                if c["kind"] == "schema"}

    assert plan("v1") == {"order_placed v1": "add"}
    assert cli("apply", f"{APP}:v1", *engine).exit_code == 0
    assert plan("v1") == {"order_placed v1": "unchanged"}

    result = cli("schema", "check", f"{APP}:v2_breaks", *engine)
    assert result.exit_code == 1
    assert "breaking" in result.output and "$.qty: required attribute added" in result.output
    assert plan("v2_breaks") == {"order_placed v2": "blocked"}
    result = cli("apply", f"{APP}:v2_breaks", *engine, "--yes")
    assert result.exit_code == 2 and "the schema registry refuses" in result.output

    result = cli("schema", "check", f"{APP}:v2_ok", *engine, "--json")
    assert result.exit_code == 0, result.output
    assert [(c["version"], c["action"]) for c in json.loads(result.output)] == [
        (1, "unchanged"), (2, "add")]


def test_discover_proposes_a_schema_from_the_archive(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    samples = [{"id": "a", "qty": 1, "from": "x"}, {"id": "b", "qty": 2.5}]

    async def publish() -> None:
        async with Stack("schemas").start(url) as rt:  # nothing declared: anything flows
            await rt.publish_many([Event(type="order_placed", source="t", data=d)
                                   for d in samples])
            await rt.publish(Event(type="other", source="t", data={"ok": True}))

    asyncio.run(publish())
    result = cli("schema", "discover", f"{APP}:v1", "--engine", url)
    assert result.exit_code == 0, result.output
    proposed = json.loads(result.output)
    assert set(proposed) == {"order_placed", "other"}
    placed = proposed["order_placed"]
    assert placed["properties"]["qty"] == {"type": "number"} and placed["required"] == ["id", "qty"]
    validate = compile_validator(Schema("order_placed", placed))
    for sample in samples:
        validate(sample)
    only = json.loads(cli("schema", "discover", f"{APP}:v1", "--engine", url,
                          "--type", "other").output)
    assert list(only) == ["other"]


def test_codegen_writes_a_struct_or_a_pydantic_model(tmp_path: Path) -> None:
    engine = ["--engine", f"sqlite:///{tmp_path / 'reg.db'}"]
    assert cli("apply", f"{APP}:v1", *engine).exit_code == 0
    result = cli("schema", "codegen", "order_placed", *engine)
    assert result.exit_code == 0, result.output
    space: dict[str, Any] = {}
    exec(compile(result.output, "generated", "exec"), space)
    model = space["OrderPlaced"]
    order = msgspec.convert({"id": "o", "from": "web"}, model)
    assert (order.id, order.from_, order.qty) == ("o", "web", None)
    assert is_compatible(V1, Schema("order_placed", model).document, "BACKWARD")

    out = tmp_path / "model.py"
    result = cli("schema", "codegen", "order_placed", *engine, "--pydantic", "-o", str(out))
    assert result.exit_code == 0, result.output
    space = {}
    exec(compile(out.read_text(), str(out), "exec"), space)
    assert space["OrderPlaced"].model_validate({"id": "o", "from": "web"}).from_ == "web"

    missing = cli("schema", "codegen", "nope", *engine)
    assert missing.exit_code == 2 and "no schema of event type 'nope'" in missing.output
    declared = cli("schema", "codegen", "order_placed", "--stack", f"{APP}:v1",
                   "--engine", f"sqlite:///{tmp_path / 'empty.db'}")
    assert declared.exit_code == 0 and "class OrderPlaced" in declared.output


def test_asyncapi_prints_the_document() -> None:
    result = cli("asyncapi", f"{APP}:v1")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["asyncapi"] == "3.0.0"
    assert "order_placed" in doc["channels"]["bus_default"]["messages"]
