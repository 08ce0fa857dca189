"""The root of the ``setpiece`` command: global options, and the one place that knows every
command group.

Each group lives in its own module of ``setpiece.cli.commands`` and adds itself through its
``register(app)``; none of them imports this module. The order below is the order of
``setpiece --help`` (commands first, then the groups with subcommands).
"""

from __future__ import annotations

from typing import Annotated

import typer

from setpiece.cli._common import USAGE_ERROR
from setpiece.cli._console import out, state
from setpiece.cli._help import Typer
from setpiece.cli.commands import (
    dlq,
    events,
    gateway,
    inspect,
    new,
    plan,
    run,
    schema,
    workflow,
)

__all__ = ["app", "cli"]

app = Typer(
    name="setpiece",
    help="Run, feed and inspect setpiece stacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


# dev, run | publish, replay, tail | inspect | plan, apply, rollback, history | gateway, token |
# dlq | new | workflow, task | schema, asyncapi
for group in (run, events, inspect, plan, gateway, dlq, new, workflow, schema):
    group.register(app)


def cli(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (for ``main`` and tests)."""
    try:
        app(args=argv, prog_name="setpiece", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else USAGE_ERROR)
    return 0

