"""``setpiece plan``, ``apply``, ``rollback`` and ``history``: the change set between the stack
and its engine, shown or applied, and the deployments it recorded (the logic comes from
``setpiece.cli.planning`` and ``setpiece.deploy``)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from setpiece.cli._common import CliError, engine_url, load_stack, open_existing, store_url
from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target

__all__ = ["apply", "history", "plan", "register", "rollback"]

AllOpt = Annotated[bool, typer.Option("--all", help="List unchanged items too.")]
AllowDeleteOpt = Annotated[bool, typer.Option(
    "--allow-delete",
    help="Also delete what is no longer declared and holds data (records, committed offsets); "
    "asks first. Without it, apply refuses such a change set and names what holds data.",
)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
OptionalTarget = Annotated[str | None, typer.Argument(
    metavar="[MODULE:STACK]", show_default=False,
    help="The stack, only to find its default engine (sqlite:///.setpiece/NAME.db); "
    "not needed with --engine.",
)]

_MARKS = {"add": "[green]+ add      [/]", "modify": "[yellow]~ modify   [/]",
          "blocked": "[red]! blocked  [/]", "unchanged": "[dim]= unchanged[/]",
          "delete": "[red]- delete   [/]"}


def _plan(
    target: str, engine: str | None, store: str | None
) -> tuple[Any, str, dict[str, Any], Any]:
    """(change set, engine URL, the definition apply records, the stack)."""
    from setpiece.cli.planning import stack_plan
    from setpiece.engine import open_engine

    stack = load_stack(target)
    url = engine_url(stack.name, engine)
    pg = store_url(store)
    plan, definition = run_async(stack_plan(stack, url, pg, lambda: open_engine(url, store=pg)))
    return plan, url, definition, stack


def _print_plan(plan: Any, *, unchanged: bool) -> None:
    out.print(f"[bold]change set[/] for {escape(plan.engine)}")
    for change in plan.changes:
        if change.action == "unchanged" and not unchanged:
            continue
        detail = f"  [dim]({escape(change.detail)})[/]" if change.detail else ""
        if change.action == "delete":
            detail += (f"  [red]holds {escape(change.holds)}: needs --allow-delete[/]"
                       if change.guarded else "  [dim](holds no data)[/]")
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
    PostgreSQL schema): add, modify, blocked (cannot change in place), unchanged, delete. A
    deletion says what data it would lose (records, committed offsets): apply makes those only
    with --allow-delete.
    """
    change_set, _url, _definition, _stack = _plan(target, engine, store)
    if json_out:
        print_json({"engine": change_set.engine, "summary": change_set.summary(),
                    "changes": [c.as_dict() for c in change_set.changes]})
    else:
        _print_plan(change_set, unchanged=show_all)


def _check(change_set: Any, *, allow_delete: bool, yes: bool) -> None:
    """Refuse before changing anything: blocked items, data lost without --allow-delete, or
    not confirmed."""
    from setpiece.deploy import check
    from setpiece.errors import ConfigError

    try:
        check(change_set.changes, allow_delete=allow_delete)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    lost = change_set.guarded
    if lost and not yes:
        names = ", ".join(c.name for c in lost)
        if not typer.confirm(f"delete {names} and the data they hold?", default=False):
            raise CliError("nothing applied (deletion not confirmed)")


def _done(deployment: Any, change_set: Any) -> None:
    made = sum(1 for c in change_set.changes if c.action in ("add", "modify", "delete"))
    out.print(f"applied {made} change(s); deployment {deployment.number} is current")


@guarded
def apply(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    allow_delete: AllowDeleteOpt = False,
    yes: YesOpt = False,
    show_all: AllOpt = False,
) -> None:
    """Apply the change set and record it as a new deployment (see `setpiece history`).

    Creates and reconfigures what the stack declares, deletes what it no longer declares, and
    records the stack's definition as the current deployment. If the engine refuses any step,
    every step made is undone and the previous deployment stays current. Refuses changes that
    cannot be made in place, and deletions of what holds data unless --allow-delete.
    """
    from setpiece.cli.planning import apply_changes
    from setpiece.engine import open_engine

    change_set, url, definition, stack = _plan(target, engine, store)
    _print_plan(change_set, unchanged=show_all)
    _check(change_set, allow_delete=allow_delete, yes=yes)

    async def go() -> Any:
        db = await open_engine(url, store=store_url(store))
        try:
            return await apply_changes(db, change_set, definition, allow_delete=allow_delete,
                                       schemas=stack.schemas)
        finally:
            await db.close()

    deployment = run_async(go())
    if deployment is None:
        out.print("nothing to apply (the current deployment has this definition)")
    else:
        _done(deployment, change_set)


@guarded
def rollback(
    target: OptionalTarget = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    to: Annotated[int | None, typer.Option(
        "--to", metavar="N", help="The deployment to return to (default: the one before the "
        "current).",
    )] = None,
    allow_delete: AllowDeleteOpt = False,
    yes: YesOpt = False,
    show_all: AllOpt = False,
) -> None:
    """Return to an earlier deployment: re-apply its definition, as a new deployment.

    Streams and groups are put back as that deployment had them (what it did not have is
    deleted: with --allow-delete if it holds data). Undone on any refusal, like apply. The
    code that runs is yours to deploy: rollback restores the engine's side.
    """
    from setpiece.cli.planning import deployer, rollback_to
    from setpiece.deploy import deploy

    url = engine_url(load_stack(target).name if target else None, engine)
    pg = store_url(store)
    current, goal, change_set = run_async(
        rollback_to(url, lambda: open_existing(url, pg), to))
    out.print(f"rolling back from deployment {current.number} to {goal.number} "
              f"({escape(goal.stack)}, {goal.digest})")
    _print_plan(change_set, unchanged=show_all)
    _check(change_set, allow_delete=allow_delete, yes=yes)

    async def go() -> Any:
        import time

        db = await open_existing(url, pg)
        try:
            return await deploy(db, change_set.changes, goal.definition,
                                allow_delete=allow_delete, by=deployer(), at=time.time(),
                                action="rollback", rollback_of=goal.number)
        finally:
            await db.close()

    _done(run_async(go()), change_set)


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@guarded
def history(
    target: OptionalTarget = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the deployments recorded in the engine, oldest first; the last is current.

    --json prints each with its full definition (services and versions, buses and rules,
    streams, groups, workflows, routes).
    """
    from setpiece.deploy import History

    url = engine_url(load_stack(target).name if target else None, engine)
    pg = store_url(store)

    async def go() -> list[Any]:
        db = await open_existing(url, pg)
        try:
            return await History(db).list()
        finally:
            await db.close()

    deployments = run_async(go())
    if json_out:
        print_json([d.as_json() for d in deployments])
        return
    if not deployments:
        out.print(f"no deployment recorded on {escape(url)} (run setpiece apply)")
        return
    table = Table("#", "when", "by", "action", "stack", "versions", "definition")
    for d in deployments:
        action = d.action if d.rollback_of is None else f"rollback to {d.rollback_of}"
        versions = ", ".join(f"{k}={v}" for k, v in sorted(d.versions.items()))
        mark = " (current)" if d is deployments[-1] else ""
        table.add_row(f"{d.number}{mark}", _when(d.at), escape(d.by), action,
                      escape(d.stack), escape(versions), d.digest)
    out.print(table)


def register(app: Typer) -> None:
    """Add ``plan``, ``apply``, ``rollback`` and ``history`` to the root command."""
    app.command()(plan)
    app.command()(apply)
    app.command()(rollback)
    app.command()(history)
