"""``setpiece dlq list | show | redrive``: the dead letters of a stack, and sending them back
to the handler or rule target that failed them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from setpiece.cli._common import CliError
from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target
from setpiece.engine.contract import Engine

__all__ = ["dlq_app", "register"]

dlq_app = Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)


def register(app: Typer) -> None:
    """Add ``setpiece dlq ...`` to the root command."""
    app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
@guarded
def dlq_list(
    target: Target,
    include_redriven: Annotated[bool, typer.Option(
        "--all", help="Include dead letters already redriven.")] = False,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List dead letters, oldest first."""
    from setpiece.cli.inspecting import dead_letters, letter_dict

    async def body(stack: Any, db: Engine) -> list[Any]:
        return await dead_letters(stack, db, include_redriven=include_redriven)

    letters = run_async(with_engine(target, engine, store, body))
    if json_out:
        print_json([letter_dict(d) for d in letters])
        return
    if not letters:
        out.print("no dead letters")
        return
    table = Table("id", "time", "handler", "event", "attempts", "error")
    for d in letters:
        table.add_row(d.id, d.time, d.handler, d.event.type if d.event else "(unreadable)",
                      str(d.attempts), escape(d.error))
    out.print(table)


@dlq_app.command("show")
@guarded
def dlq_show(
    target: Target,
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="A dead letter's id.")],
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one dead letter: the event, the error and its traceback."""
    from setpiece.cli.inspecting import dead_letters, letter_dict

    async def body(stack: Any, db: Engine) -> list[Any]:
        return await dead_letters(stack, db, include_redriven=True)

    found = [d for d in run_async(with_engine(target, engine, store, body)) if d.id == letter_id]
    if not found:
        raise CliError(f"no dead letter {letter_id!r} (see: setpiece dlq list)")
    data = letter_dict(found[0], full=True)
    if json_out:
        print_json(data)
        return
    for key in ("id", "time", "handler", "group", "stream", "attempts", "error"):
        out.print(f"[bold]{key:>9}[/] {escape(str(data[key]))}")
    out.print("[bold]    event[/]")
    out.print_json(json.dumps(data["event"] if data["event"] else data["raw"]))
    out.print("[bold]traceback[/]")
    out.print(escape(data["traceback"].rstrip()), style="dim")


@dlq_app.command("redrive")
@guarded
def dlq_redrive(
    target: Target,
    ids: Annotated[list[str] | None, typer.Argument(
        metavar="[ID]...", help="Dead letters to redrive (default: all).")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Send dead-lettered events back to the handler or rule target that failed them."""
    from setpiece.cli.inspecting import dead_letters, tool_runtime

    async def body(stack: Any, db: Engine) -> int:
        if ids:
            pending = {d.id for d in await dead_letters(stack, db, include_redriven=False)}
            unknown = [i for i in ids if i not in pending]
            if unknown:
                raise CliError(f"no pending dead letter {', '.join(map(repr, unknown))} "
                               "(see: setpiece dlq list --all)")
        return await tool_runtime(stack, db).redrive(ids or None)

    count = run_async(with_engine(target, engine, store, body))
    out.print(f"redrove {count} dead letter(s)")
