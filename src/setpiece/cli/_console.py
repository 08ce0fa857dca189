"""Where the commands write: the consoles, JSON output, and errors as one red line.

``guarded`` wraps every command: a mistake the user can fix prints one line and exits with the
code ``_common.exit_code`` gives it; ``--debug`` (``state.debug``) shows the traceback too.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from setpiece.cli._common import describe, exit_code

__all__ = ["PIPE_WIDTH", "err", "guarded", "out", "print_json", "state"]

F = TypeVar("F", bound=Callable[..., Any])

# When the output is a pipe or a file (and COLUMNS is unset), tables are as wide as their
# content: one row per line, for grep and less -S, instead of wrapped at 80 columns.
PIPE_WIDTH = 10_000


class _Console(Console):
    """A rich console that does not wrap tables when its output is not a terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal or os.environ.get("COLUMNS"):
            return size
        return ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self.width, self.height = new_size


out = _Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _State:
    debug = False


state = _State()


def guarded(fn: F) -> F:
    """Turn user mistakes into one red line and an exit code; --debug shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            if state.debug:  # the traceback too, and the same exit code as without --debug
                traceback.print_exception(exc, file=sys.stderr)
            err.print(f"[bold red]error:[/] {escape(describe(exc))}")
            raise typer.Exit(exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
