"""The ``setpiece`` command: typer commands over the small modules beside this one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from setpiece.cli._common import (
    USAGE_ERROR,
    CliError,
)
from setpiece.cli._console import guarded, out, print_json, state
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import (
    EngineOpt,
    JsonOpt,
    StoreOpt,
    Target,
)
from setpiece.cli.commands import events, gateway, inspect, plan, run, workflow
from setpiece.engine.contract import Engine

__all__ = ["app"]

app = Typer(
    name="setpiece",
    help="Run, feed and inspect setpiece stacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
dlq_app = Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)
new_app = Typer(help="Scaffold new code.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(new_app, name="new")


def _print_version(value: bool) -> None:
    """``--version``: eager, so it answers before click asks for a command."""
    if value:
        from setpiece import __version__

        out.print(f"setpiece {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show the full traceback of an error too (the exit code stays the same).",
    )] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", is_eager=True, callback=_print_version,
    )] = False,
) -> None:
    """Run, feed and inspect setpiece stacks.

    Exit codes: 0 ok, 1 other error, 2 usage or input error, 3 engine error.
    """
    state.debug = debug


run.register(app)


events.register(app)


inspect.register(app)


plan.register(app)


gateway.register(app)


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


# -- new ----------------------------------------------------------------------------------------


@new_app.command("service")
@guarded
def new_service(
    name: Annotated[str, typer.Argument(help="The service's name (lowercase, e.g. 'billing').")],
    directory: Annotated[Path, typer.Option(
        "--dir", "-d", metavar="DIR", help="Where to write the files.")] = Path(),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Scaffold a service module (with a stack to run it) and its passing test."""
    from setpiece.cli.scaffold import new_service as scaffold

    written = scaffold(name, directory, force=force)
    for path in written:
        out.print(f"[green]created[/] {path}")
    module = written[0].stem
    out.print(f"next: [bold]setpiece dev {module}:stack[/]  (from {directory}), "
              f"and [bold]pytest {written[1]}[/]")


def cli(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (for ``main`` and tests)."""
    try:
        app(args=argv, prog_name="setpiece", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else USAGE_ERROR)
    return 0


workflow.register(app)
