"""Help pages that read like a manual: ``--engine URL``, not ``--engine <str>``.

typer shows each parameter's Python type (``<list[str]>``), wraps required arguments in braces
(``{MODULE:STACK}``) and cuts command summaries to fit one line. The classes here render the
usage line and the parameter list from the metavars the commands declare (or the parameter's
name, upper case), and list each subcommand with its whole first sentence, wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["HelpCommand", "HelpGroup", "Typer"]

F = TypeVar("F", bound=Callable[..., Any])


# typer carries its own copy of click: its parameters are told apart by ``param_type_name``.


def _argument_name(param: Any) -> str:
    return param.metavar or (param.name or "").upper()


def _argument_usage(param: Any) -> str:
    name = _argument_name(param)
    if name.startswith("["):  # the command wrote its usage out, e.g. "[ID]..."
        return name
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


def _option_name(param: Any) -> str:
    names = ", ".join(param.opts)
    if not param.is_flag and not param.count:
        names += " " + (param.metavar or (param.name or "value").upper())
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    return names


class _PlainHelp:
    options_metavar: str | None
    get_params: Any

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [_argument_usage(p) for p in self.get_params(ctx)
                   if p.param_type_name == "argument"]
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), record[1]))
            elif param.param_type_name == "option":
                options.append((_option_name(param), record[1]))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class HelpCommand(_PlainHelp, TyperCommand):
    """A command whose help shows metavars, not Python types."""


class HelpGroup(_PlainHelp, TyperGroup):
    """A command group whose help shows metavars and whole command summaries."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*super().collect_usage_pieces(ctx), self.subcommand_metavar]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        super().format_options(ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class Typer(typer.Typer):
    """``typer.Typer`` whose groups and commands use the help classes above."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", HelpCommand)
        decorator: Callable[[F], F] = super().command(*args, **kwargs)
        return decorator
