"""``setpiece plan`` and ``setpiece apply``: the change set between the stack and its engine,
shown or applied (the change set itself comes from ``setpiece.cli.planning``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from setpiece.cli._common import CliError, engine_url, load_stack, store_url
from setpiece.cli._console import err, guarded, out, print_json
from setpiece.cli._engines import run_async
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target

__all__ = ["apply", "plan", "register"]

AllOpt = Annotated[bool, typer.Option("--all", help="List unchanged items too.")]

_MARKS = {"add": "[green]+ add      [/]", "modify": "[yellow]~ modify   [/]",
          "blocked": "[red]! blocked  [/]", "unchanged": "[dim]= unchanged[/]",
          "delete": "[red]- delete   [/]"}


def _plan(target: str, engine: str | None, store: str | None) -> tuple[Any, Any, str]:
    from setpiece.cli.planning import make_plan
    from setpiece.engine import open_engine

    stack = load_stack(target)
    url = engine_url(stack.name, engine)
    pg = store_url(store)
    plan = run_async(make_plan(stack, url, pg, lambda: open_engine(url, store=pg)))
    return stack, plan, url


def _print_plan(plan: Any, *, unchanged: bool) -> None:
    out.print(f"[bold]change set[/] for {escape(plan.engine)}")
    for change in plan.changes:
        if change.action == "unchanged" and not unchanged:
            continue
        detail = f"  [dim]({escape(change.detail)})[/]" if change.detail else ""
        out.print(f"  {_MARKS[change.action]} {change.kind:<7} {escape(change.name)}{detail}")
    out.print(plan.summary())


@guarded
def plan(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    show_all: AllOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the change set between the stack and the engine; changes nothing.

    Streams (partitions, retention), consumer groups and the engine's storage (SQLite file,
    PostgreSQL schema): add, modify, blocked (cannot change in place), unchanged, delete.
    """
    _stack, change_set, _url = _plan(target, engine, store)
    if json_out:
        print_json({"engine": change_set.engine, "summary": change_set.summary(),
                    "changes": [c.as_dict() for c in change_set.changes]})
    else:
        _print_plan(change_set, unchanged=show_all)


@guarded
def apply(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    allow_delete: Annotated[bool, typer.Option(
        "--allow-delete",
        help="Also delete streams and groups the stack no longer declares (asks first).",
    )] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    show_all: AllOpt = False,
) -> None:
    """Apply the change set: create and reconfigure what the stack declares.

    Never deletes without --allow-delete, and then only streams and groups the stack no longer
    declares, after confirmation (or --yes). Refuses changes that cannot be made in place.
    """
    from setpiece.cli.planning import apply_changes
    from setpiece.engine import open_engine

    stack, change_set, url = _plan(target, engine, store)
    _print_plan(change_set, unchanged=show_all)
    blocked = change_set.of("blocked")
    if blocked:
        raise CliError(f"cannot apply: {', '.join(c.name for c in blocked)} cannot change in "
                       "place (declare a new stream and migrate)")
    deletes = change_set.of("delete")
    if deletes and not allow_delete:
        err.print(f"[yellow]{len(deletes)} deletion(s) skipped[/]: pass --allow-delete to "
                  "delete what the stack no longer declares")
    elif deletes and not yes:
        names = ", ".join(c.name for c in deletes)
        if not typer.confirm(f"delete {names} and the data they hold?", default=False):
            raise CliError("nothing applied (deletion not confirmed)")
    if not change_set.pending or (
        not allow_delete and not change_set.of("add", "modify")
    ):
        out.print("nothing to apply")
        return

    async def go() -> list[Any]:
        db = await open_engine(url, store=store_url(store))
        try:
            return await apply_changes(stack, db, change_set, allow_delete=allow_delete)
        finally:
            await db.close()

    done = run_async(go())
    out.print(f"applied {len(done)} change(s)")


def register(app: Typer) -> None:
    """Add ``setpiece plan`` and ``setpiece apply`` to the root command."""
    app.command()(plan)
    app.command()(apply)
