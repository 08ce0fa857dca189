"""``setpiece workflow ...`` and ``setpiece task ...``: durable executions from the command line.

They work on the engine directly (no consumers run): starting an execution records it, and
whichever worker of the stack runs workflows (``setpiece run`` / ``dev``) drives it.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import msgspec
import typer
from rich.markup import escape

from setpiece._json import DepthError
from setpiece._json import decode as decode_json
from setpiece.cli._common import CliError
from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target
from setpiece.engine.contract import Engine
from setpiece.stack import Stack

__all__ = ["register", "task_app", "workflow_app"]

workflow_app = Typer(
    help="Durable workflows: start, list, describe, history, stop.", no_args_is_help=True
)
task_app = Typer(
    help="Answer task tokens: success, failure, heartbeat.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``setpiece workflow ...`` and ``setpiece task ...`` to the root command."""
    app.add_typer(workflow_app, name="workflow")
    app.add_typer(task_app, name="task")


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    try:
        return decode_json(text, what)
    except DepthError as exc:
        raise CliError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise CliError(f"{what}: not valid JSON ({exc})") from None


def _description(d: Any) -> dict[str, Any]:
    return {
        "id": d.id, "workflow": d.workflow, "version": d.version, "name": d.name,
        "status": d.status, "input": d.input, "output": d.output, "error": d.error,
        "cause": d.cause, "start_date": d.start_date.isoformat(),
        "stop_date": d.stop_date.isoformat() if d.stop_date else None,
        "waiting": list(d.waiting),
    }


@workflow_app.command("start")
@guarded
def workflow_start(
    target: Target,
    workflow: Annotated[str, typer.Argument(metavar="WORKFLOW",
        help="The workflow's name in the stack.")],
    input_json: Annotated[str | None, typer.Option(
        "--input", metavar="JSON",
        help="The execution's input as JSON ('-' reads standard input).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME",
        help="The execution's name (idempotent: the same name starts nothing new).",
    )] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Start a durable execution; prints its id. A worker of the stack runs it."""
    from setpiece.workflows import start_execution

    payload = _json_arg(input_json, "--input")

    async def body(stack: Stack, db: Engine) -> str:
        found = stack.workflows.get(workflow)
        if found is None:
            raise CliError(f"the stack has no workflow {workflow!r} "
                           f"(workflows: {sorted(stack.workflows)})")
        return await start_execution(db, found, payload, name=name)

    out.print(run_async(with_engine(target, engine, store, body, existing=False)))


@workflow_app.command("list")
@guarded
def workflow_list(
    target: Target,
    workflow: Annotated[str | None, typer.Option("--workflow", metavar="WORKFLOW",
        help="Only this workflow.")] = None,
    status: Annotated[str | None, typer.Option(
        "--status", metavar="STATUS",
        help="RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Executions by status (RUNNING first: stuck ones are visible)."""
    from setpiece.workflows import list_executions

    async def body(stack: Stack, db: Engine) -> list[Any]:
        return await list_executions(db, workflow, status)

    found = run_async(with_engine(target, engine, store, body))
    order = {"RUNNING": 0}
    found.sort(key=lambda d: (order.get(d.status, 1), d.status, d.start_date))
    if as_json:
        print_json([_description(d) for d in found])
        return
    from rich.table import Table

    table = Table("status", "execution", "version", "started", "stopped")
    for d in found:
        table.add_row(d.status, d.id, d.version[:12], d.start_date.isoformat(timespec="seconds"),
                      d.stop_date.isoformat(timespec="seconds") if d.stop_date else "")
    out.print(table)


@workflow_app.command("describe")
@guarded
def workflow_describe(
    target: Target,
    execution: Annotated[str, typer.Argument(metavar="EXECUTION",
        help="The execution id ('workflow:name').")],
    engine: EngineOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One execution: status, input, output or error, and what it waits for."""
    from setpiece.workflows import describe_execution

    async def body(stack: Stack, db: Engine) -> Any:
        return await describe_execution(db, execution)

    described = _description(run_async(with_engine(target, engine, store, body)))
    if as_json:
        print_json(described)
        return
    for key, value in described.items():
        if value not in (None, [], ""):
            shown = value if isinstance(value, str) else json.dumps(value)
            out.print(f"[bold]{key:>10}[/]  {escape(shown)}")


@workflow_app.command("history")
@guarded
def workflow_history(
    target: Target,
    execution: Annotated[str, typer.Argument(metavar="EXECUTION",
        help="The execution id ('workflow:name').")],
    engine: EngineOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The execution's history events, like Step Functions' GetExecutionHistory."""
    from setpiece.workflows import execution_history

    async def body(stack: Stack, db: Engine) -> list[Any]:
        return await execution_history(db, execution)

    events = run_async(with_engine(target, engine, store, body))
    if as_json:
        print_json([{"id": e.id, "type": e.type, "timestamp": e.timestamp.isoformat(),
                     "details": dict(e.details)} for e in events])
        return
    for e in events:
        state = e.details.get("name") or e.details.get("state") or ""
        out.print(f"{e.id:>4}  {e.timestamp.isoformat(timespec='milliseconds')}  "
                  f"{e.type:<28} {state}")


@workflow_app.command("stop")
@guarded
def workflow_stop(
    target: Target,
    execution: Annotated[str, typer.Argument(metavar="EXECUTION",
        help="The execution id ('workflow:name').")],
    error: Annotated[str | None, typer.Option("--error", metavar="ERROR",
        help="An error name to record.")] = None,
    cause: Annotated[str | None, typer.Option("--cause", metavar="CAUSE",
        help="A cause to record.")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Stop a running execution (it ends ABORTED)."""
    from setpiece.workflows import stop_execution

    _on_engine(target, engine, store,
               lambda db: stop_execution(db, execution, error=error, cause=cause))


def _on_engine(target: str, engine: str | None, store: str | None, action: Any) -> None:
    """Run ``action(engine)`` on the stack's engine."""

    async def body(stack: Stack, db: Engine) -> None:
        await action(db)

    run_async(with_engine(target, engine, store, body))


@task_app.command("success")
@guarded
def task_success(
    target: Target,
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="The task token.")],
    output: Annotated[str, typer.Option(
        "--output", metavar="JSON",
        help="The task's result as JSON ('-' reads standard input).")] = "null",
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Complete a task that waits for its token, with a result."""
    from setpiece.workflows import send_task_success

    result = _json_arg(output, "--output")
    _on_engine(target, engine, store, lambda db: send_task_success(db, token, result))


@task_app.command("failure")
@guarded
def task_failure(
    target: Target,
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="The task token.")],
    error: Annotated[str | None, typer.Option("--error", metavar="ERROR",
        help="The ASL error name.")] = None,
    cause: Annotated[str | None, typer.Option("--cause", metavar="CAUSE",
        help="Why it failed.")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Fail a task that waits for its token."""
    from setpiece.workflows import send_task_failure

    _on_engine(target, engine, store, lambda db: send_task_failure(db, token, error, cause))


@task_app.command("heartbeat")
@guarded
def task_heartbeat(
    target: Target,
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="The task token.")],
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Tell a waiting task its worker is alive (resets HeartbeatSeconds)."""
    from setpiece.workflows import send_task_heartbeat

    _on_engine(target, engine, store, lambda db: send_task_heartbeat(db, token))
