"""Declarations are plain data (DESIGN.md §5, issue 13).

The bus, service, stack and workflow declarations, and what a stack declares about HTTP, import
no engine, runtime or edge — directly, inside a function, under ``TYPE_CHECKING`` or through a
chain of other modules. The one door down is ``Stack.start`` / ``Stack.asgi`` (and ``_Started``,
what ``start`` returns), which open the runtime and its gateway.
"""

from __future__ import annotations

import ast
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import setpiece
from setpiece import Bus, ConfigError, Service, Stack, Workflow, WorkflowTarget
from setpiece.cron import check_cron, next_cron

DECLARATIONS = (
    "setpiece.bus", "setpiece.service", "setpiece.stack", "setpiece.workflows.workflow",
    "setpiece.http", "setpiece.route_params", "setpiece.route_table",
)
ABOVE = (
    "setpiece.engine", "setpiece.runtime", "setpiece.context", "setpiece.gateway",
    "setpiece.workflows._durable", "setpiece.workflows._api", "setpiece.workflows._tasks",
    "setpiece.workflows._tokens", "setpiece.workflows._store", "setpiece.cli",
)
# What Stack.start / Stack.asgi / _Started open (the one door down), and nothing else.
DOOR = {("setpiece.stack", "setpiece._assembly")}
SRC = Path(setpiece.__file__).parent


def _graph() -> Any:
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("setpiece")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _door_lines() -> set[int]:
    """The lines of stack.py where the door may import: Stack.start, Stack.asgi, _Started and
    the TYPE_CHECKING block (which names the types they return)."""
    tree = ast.parse((SRC / "stack.py").read_text())
    lines: set[int] = set()

    def span(node: ast.stmt) -> range:
        return range(node.lineno, (node.end_lineno or node.lineno) + 1)

    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            lines.update(span(node))
        if isinstance(node, ast.ClassDef) and node.name == "_Started":
            lines.update(span(node))
        if isinstance(node, ast.ClassDef) and node.name == "Stack":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in ("start", "asgi"):
                    lines.update(span(item))
    return lines


def test_declarations_import_nothing_above_them_but_through_the_stacks_one_door() -> None:
    graph = _graph()
    door_lines = _door_lines()
    for importer, imported in DOOR:
        if graph.direct_import_exists(importer=importer, imported=imported):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                assert detail["line_number"] in door_lines, (
                    f"{importer} imports {imported} outside Stack.start/asgi/_Started: "
                    f"line {detail['line_number']}: {detail['line_contents']}")
            graph.remove_import(importer=importer, imported=imported)
    broken = []
    for declaration in DECLARATIONS:
        for module in sorted(graph.modules):
            if any(_under(module, package) for package in ABOVE):
                chain = graph.find_shortest_chain(importer=declaration, imported=module)
                if chain:
                    broken.append(" -> ".join(chain))
    assert broken == []


def test_no_declaration_finds_a_class_through_sys_modules() -> None:
    for name in DECLARATIONS:
        path = SRC.joinpath(*name.split(".")[1:]).with_suffix(".py")
        assert "sys.modules" not in path.read_text(), f"{name} looks a module up in sys.modules"


def test_a_workflow_given_as_a_rule_target_stands_for_its_workflow_target() -> None:
    flow = Workflow("approve", {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    bus = Bus("orders")
    rule = bus.rule("placed", {"type": ["placed"]}, flow)
    assert rule.targets == (WorkflowTarget("approve"),)
    Stack("shop", buses=[bus], workflows=[flow])  # the reference resolves


def test_the_gateway_and_the_package_name_the_same_http_declarations() -> None:
    import setpiece.http
    from setpiece import gateway
    from setpiece.gateway import breaker, routing

    for name in ("VersionRoutes", "CallPolicy", "BreakerPolicy"):
        declared = getattr(setpiece.http, name)
        assert getattr(setpiece, name) is getattr(gateway, name) is declared
        assert declared.__module__ == "setpiece.http"
    assert routing.VersionRoutes is setpiece.http.VersionRoutes
    assert breaker.CallPolicy is setpiece.http.CallPolicy
    assert gateway.VERSION_HEADER == routing.VERSION_HEADER == setpiece.http.VERSION_HEADER


def test_an_authenticator_other_than_jwt_is_a_valid_stack_auth() -> None:
    class Header:
        realm = "test"

        async def authenticate(self, authorization: str | None) -> Any:
            return authorization

        def authorize(self, identity: Any, scopes: Any) -> None:
            return None

    auth = Header()
    assert Stack("s", auth=auth).auth is auth


def test_route_clashes_are_caught_when_the_stack_is_built() -> None:
    svc = Service("notes")

    @svc.get("/notes/{name}")
    async def read(name: str) -> dict[str, str]:
        return {}

    @svc.get("/notes/{id}", name="read_by_id")
    async def read_by_id(id: str) -> dict[str, str]:
        return {}

    with pytest.raises(ConfigError, match=r"route notes.read_by_id: GET /notes/\{id\} is already "
                                          r"served by route notes.read"):
        Stack("app", services=[svc])


def test_a_route_on_a_reserved_path_is_refused_when_the_stack_is_built() -> None:
    svc = Service("ops")

    @svc.get("/healthz")
    async def health() -> dict[str, str]:
        return {}

    with pytest.raises(ConfigError, match=re.escape("route ops.health: '/healthz' is reserved")):
        Stack("app", services=[svc])


# -- cron parsing (pure) ------------------------------------------------------------------------


def test_check_cron_names_where_and_the_expression() -> None:
    check_cron("*/5 * * * *", "here")
    with pytest.raises(ConfigError, match=r"service 'b': invalid cron expression '61 \* \* \* \*'"):
        check_cron("61 * * * *", "service 'b'")


def test_a_service_refuses_a_bad_cron_expression_when_declared() -> None:
    with pytest.raises(ConfigError, match="service 'billing': invalid cron expression"):
        Service("billing").cron("not a cron")


def test_next_cron_is_strictly_after_and_on_the_expression() -> None:
    monday_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
    assert next_cron("0 9 * * 1-5", monday_9) == datetime(2026, 3, 3, 9, 0, tzinfo=UTC).timestamp()
    assert next_cron("0 9 * * 1-5", monday_9 - 0.5) == monday_9
    friday_10 = datetime(2026, 3, 6, 10, 0, tzinfo=UTC).timestamp()
    assert next_cron("0 9 * * 1-5", friday_10) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC).timestamp()
    now = time.time()
    assert now < next_cron("* * * * *", now) <= now + 60
