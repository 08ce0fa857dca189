"""Code in the docs is tested: every ```python block of README.md and docs/*.md runs here.

The convention, for whoever writes docs:

* A ```python block is **self-contained**: it runs on its own, in a fresh namespace and a fresh
  empty working directory, so a reader can copy it alone and run it.
* A block that builds on the one before it says so: the line right before its fence is
  ``<!-- continue -->`` (an HTML comment, invisible when the page is rendered). It then runs in
  the namespace and directory of the previous ```python block of the same page, and a run of
  such blocks forms one chain.
* ``<!-- continue -->`` anywhere else (before the first block, before a non-python fence, not
  right before a fence) is a mistake and fails the test.
* ```text blocks are excerpts (commands, output) and are not run.
* A ```python block whose first line is ``# test_<name>.py`` is a pytest module (docs/testing.md):
  it is written to that file in a fresh directory and run with pytest, and every test in it must
  pass. It is self-contained (nothing continues it, it continues nothing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONTINUE = "<!-- continue -->"
FENCE = re.compile(r"^```(\S*)\s*$")
PYTEST_MODULE = re.compile(r"^# (test_\w+\.py)\n")


@dataclass
class Block:
    line: int  # where its fence is, 1-based
    code: str


@dataclass
class Chain:
    page: Path
    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.blocks[0].line}"


def chains(page: Path) -> list[Chain]:
    """The page's python blocks, grouped into chains by ``<!-- continue -->`` markers."""
    lines = page.read_text(encoding="utf-8").split("\n")
    found: list[Chain] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == CONTINUE:
            fence = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
            if fence is None or fence.group(1) != "python":
                raise AssertionError(f"{page.name}:{index + 1}: {CONTINUE} must be the line "
                                     "right before a ```python fence")
            if not found:
                raise AssertionError(f"{page.name}:{index + 1}: {CONTINUE} before the page's "
                                     "first python block: there is nothing to continue")
        opening = FENCE.match(line)
        if opening is None:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{page.name}:{index + 1}: a code block is never closed")
        if opening.group(1) == "python":
            block = Block(index + 1, "\n".join(lines[index + 1:end]) + "\n")
            continues = index > 0 and lines[index - 1].strip() == CONTINUE
            if continues:
                found[-1].blocks.append(block)
            else:
                found.append(Chain(page, [block]))
        index = end + 1
    return found


CHAINS = [chain for page in PAGES for chain in chains(page)]


@pytest.mark.parametrize("chain", CHAINS, ids=[chain.id for chain in CHAINS])
def test_python_blocks_run(chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = PYTEST_MODULE.match(chain.blocks[0].code)
    continued = [b.line for b in chain.blocks[1:] if PYTEST_MODULE.match(b.code)]
    assert not continued, f"{chain.id}: a pytest module block (line {continued}) stands alone"
    if module is not None:
        assert len(chain.blocks) == 1, f"{chain.id}: a pytest module block stands alone"
        run_pytest_module(tmp_path / module.group(1), chain.blocks[0].code, chain.id)
        return
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict[str, object] = {"__name__": f"docs_{chain.page.stem}"}
    for block in chain.blocks:
        where = f"{chain.page.name}, python block at line {block.line}"
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{where} failed: {exc!r}") from exc


def run_pytest_module(path: Path, code: str, where: str) -> None:
    path.write_text(code)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(path.parent), str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0 and " passed" in done.stdout, (
        f"{where}: pytest failed\n{done.stdout}\n{done.stderr}")


def test_every_page_has_its_blocks_found() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        expected = len(re.findall(r"^```python\s*$", text, re.M))
        assert sum(len(c.blocks) for c in chains(page)) == expected, page.name


def test_a_stray_continue_marker_is_refused(tmp_path: Path) -> None:
    first = tmp_path / "first.md"
    first.write_text(f"{CONTINUE}\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="nothing to continue"):
        chains(first)
    loose = tmp_path / "loose.md"
    loose.write_text(f"```python\nx = 1\n```\n\n{CONTINUE}\n\n```python\nprint(x)\n```\n")
    with pytest.raises(AssertionError, match="right before a ```python fence"):
        chains(loose)
    chained = tmp_path / "chained.md"
    chained.write_text(f"```python\nx = 1\n```\n{CONTINUE}\n```python\nprint(x)\n```\n"
                       "```text\nnot run\n```\n```python\ny = 2\n```\n")
    assert [len(c.blocks) for c in chains(chained)] == [2, 1]



def test_a_pytest_module_block_must_pass(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="pytest failed"):
        run_pytest_module(tmp_path / "test_fails.py", "def test_no():\n    assert 1 == 2\n", "x")
