"""The shape of the ``setpiece.cli`` package (DESIGN.md §5, issue 13): one module per command
group, small modules, and no import cycle among them."""

from __future__ import annotations

from pathlib import Path

import pytest

import setpiece.cli

CLI = Path(setpiece.cli.__file__).parent
MAX_LINES = 500


def _cli_graph() -> dict[str, set[str]]:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("setpiece")
    modules = {m for m in graph.modules if m == "setpiece.cli" or m.startswith("setpiece.cli.")}
    return {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules}
            for m in modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cli_modules_form_no_import_cycle() -> None:
    assert _cycles(_cli_graph()) == []


def test_only_the_root_imports_the_command_groups_and_none_imports_the_root() -> None:
    edges = _cli_graph()
    groups = {m for m in edges if m.startswith("setpiece.cli.commands.")}
    assert groups, "the command groups live in setpiece.cli.commands"
    for module, imported in edges.items():
        if module != "setpiece.cli.app":
            assert not imported & groups, f"{module} imports a command group"
        assert "setpiece.cli.app" not in imported or module == "setpiece.cli", module


def test_every_command_group_registers_itself_on_the_root() -> None:
    import importlib

    from setpiece.cli.commands import __path__ as commands_path

    names = sorted(p.stem for p in Path(commands_path[0]).glob("*.py") if p.stem != "__init__")
    assert names
    for name in names:
        module = importlib.import_module(f"setpiece.cli.commands.{name}")
        assert callable(getattr(module, "register", None)), name


def test_no_cli_module_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(CLI)): len(p.read_text().splitlines()) for p in CLI.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
