"""``setpiece new service``: scaffold new code (the files come from ``setpiece.cli.scaffold``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from setpiece.cli._console import guarded, out
from setpiece.cli._help import Typer

__all__ = ["new_app", "register"]

new_app = Typer(help="Scaffold new code.", no_args_is_help=True)


def register(app: Typer) -> None:
    """Add ``setpiece new ...`` to the root command."""
    app.add_typer(new_app, name="new")


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
