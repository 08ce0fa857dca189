"""The arguments and options several commands share, with their help text."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = [
    "BusOpt", "EngineOpt", "JsonOpt", "PublishJsonOpt", "StoreOpt", "StreamOpt", "Target",
]

Target = Annotated[str, typer.Argument(
    metavar="MODULE:STACK", show_default=False,
    help="Where the stack is: 'package.module:stack' (a Stack, or a function returning one).",
)]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", envvar="SETPIECE_ENGINE", show_envvar=True, metavar="URL",
    help="Engine URL: sqlite:///file.db, nats://host:4222?connect_timeout=5 (default: "
    "sqlite:///.setpiece/NAME.db, NAME being the stack's name).",
)]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="SETPIECE_STORE", show_envvar=True, metavar="URL",
    help="State store URL for the NATS engine: postgresql://...",
)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
PublishJsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the stored events' ids, types and sources as a JSON array.")]
BusOpt = Annotated[str | None, typer.Option(
    "--bus", metavar="BUS", help="A bus of the stack (default: its default bus).")]
StreamOpt = Annotated[str | None, typer.Option("--stream", metavar="STREAM",
    help="A stream instead of a bus.")]
