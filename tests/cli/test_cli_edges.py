"""The command line refuses bad input with exit code 2 and a message naming it (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from setpiece.cli.app import app
from setpiece.event import MAX_DEPTH

TARGET = "tests.cli.shop:stack"


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 50_000])
def test_publish_refuses_data_nested_too_deep(tmp_path: Path, levels: int) -> None:
    data = "[" * levels + "1" + "]" * levels
    text = '{"type":"order_placed","source":"cli","data":' + data + "}"
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    one = cli("publish", TARGET, "--engine", db, "--event", text)
    assert one.exit_code == 2, one.output
    assert f"limit of {MAX_DEPTH} levels" in one.stderr
    stdin = f'{{"type":"a","source":"s"}}\n{text}\n'
    lines = cli("publish", TARGET, "--engine", db, "-", input=stdin)
    assert lines.exit_code == 2 and f"limit of {MAX_DEPTH}" in lines.stderr


def test_publish_refuses_reserved_extension_names(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    event = {"type": "order_placed", "source": "cli", "spreplay": "mine"}
    out = cli("publish", TARGET, "--engine", db, "--event", json.dumps(event))
    assert out.exit_code == 2 and "spreplay" in out.stderr and "reserved" in out.stderr


def test_new_service_refuses_a_name_with_a_trailing_newline(tmp_path: Path) -> None:
    made = cli("new", "service", "evil\n", "--dir", str(tmp_path / "svc"))
    assert made.exit_code == 2 and "service name" in made.stderr
    assert not (tmp_path / "svc").exists()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 50_000])
def test_task_output_and_workflow_input_nested_too_deep_exit_2(
    tmp_path: Path, levels: int
) -> None:
    db = f"sqlite:///{tmp_path / 'wf.db'}"
    deep = "[" * levels + "]" * levels
    out = cli("task", "success", "tests.cli.wf_app:stack", "sp1." + "a" * 32,
              "--output", deep, "--engine", db)
    assert out.exit_code == 2 and f"limit of {MAX_DEPTH} levels" in out.stderr
    started = cli("workflow", "start", "tests.cli.wf_app:stack", "approve", "--input", deep,
                  "--engine", db)
    assert started.exit_code == 2 and f"limit of {MAX_DEPTH} levels" in started.stderr
