"""The engine package's shape: modules of one concept (none over about 500 lines), and the same
module names inside every engine subpackage, as docs/engine.md lists them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import setpiece.engine

ENGINE = Path(setpiece.engine.__file__).parent
SUBPACKAGES = ("sqlite", "nats", "postgres")
DOCS = Path(__file__).parents[2] / "docs" / "engine.md"
MAX_LINES = 500


@pytest.mark.parametrize(
    "module", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE))
)
def test_no_engine_module_is_over_500_lines(module: Path) -> None:
    lines = len(module.read_text().splitlines())
    name = module.relative_to(ENGINE)
    assert lines <= MAX_LINES, f"{name}: {lines} lines; split it and name both"


def _documented_modules() -> set[str]:
    """The module names in the first column of the table under "Inside each engine"."""
    text = DOCS.read_text()
    section = text.split("## Inside each engine", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([a-z_]+\.py)`", first))
    return names


def test_engine_subpackages_hold_the_modules_docs_engine_md_lists() -> None:
    present = {p.name for sub in SUBPACKAGES for p in (ENGINE / sub).glob("*.py")}
    present.discard("__init__.py")
    assert present == _documented_modules()


def test_a_module_name_means_one_role_in_every_engine() -> None:
    """The rung modules of the conformance suite exist under the same names in the engines."""
    rungs = {p.name for p in (ENGINE / "conformance").glob("*.py") if not p.name.startswith("_")}
    rungs -= {"peers.py"}  # two instances on one storage: a test concern, not a module role
    assert rungs <= {p.name for p in (ENGINE / "sqlite").glob("*.py")}
    production = {p.name for sub in ("nats", "postgres") for p in (ENGINE / sub).glob("*.py")}
    assert rungs <= production
