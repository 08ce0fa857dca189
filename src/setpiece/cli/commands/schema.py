"""``setpiece schema discover|check|codegen`` and ``setpiece asyncapi``: the stack's event
contracts — proposed from what flowed, checked against the registry, turned into code, and
published as an AsyncAPI 3.0 document."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from setpiece.cli._common import CliError, engine_url, load_stack, store_url
from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target
from setpiece.engine.contract import Engine

__all__ = ["asyncapi", "check", "codegen", "discover", "register"]

OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", metavar="FILE", help="Write to FILE instead of printing.")]


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {escape(str(output))}")


@guarded
def discover(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option(
        "--limit", metavar="N", help="Read at most N archived events per bus.")] = 10_000,
    event_type: Annotated[str | None, typer.Option(
        "--type", metavar="TYPE", help="Only this event type.")] = None,
) -> None:
    """Propose a JSON Schema per event type from what flowed (the buses' archives).

    Prints one JSON object: event type -> the proposed schema. Declare them with
    Schema(TYPE, {...}) and review them first: a proposal only knows the samples it saw.
    """
    from setpiece.bus import bus_stream_name
    from setpiece.event import decode_event
    from setpiece.schemas._discover import infer

    if limit < 1:
        raise CliError("--limit must be at least 1")

    async def body(stack: Any, db: Engine) -> dict[str, Any]:
        samples: dict[str, list[Any]] = {}
        for bus in stack.buses:
            stream = bus_stream_name(bus)
            if stream not in {s.name for s in await db.streams()}:
                continue
            starts, ends = await db.start_offsets(stream), await db.end_offsets(stream)
            left = limit
            for partition, (offset, end) in enumerate(zip(starts, ends, strict=True)):
                while offset < end and left > 0:
                    records = await db.read(stream, partition, offset, min(512, left))
                    if not records:
                        break
                    for record in records:
                        event = decode_event(record.value)
                        if event_type is None or event.type == event_type:
                            samples.setdefault(event.type, []).append(event.data)
                    left -= len(records)
                    offset = records[-1].offset + 1
        return {name: infer(data, title=name) for name, data in sorted(samples.items())}

    found = run_async(with_engine(target, engine, store, body))
    if not found:
        raise CliError("no archived events to learn from" +
                       (f" of type {event_type!r}" if event_type else ""))
    print_json(found)


@guarded
def check(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare the declared schemas with the engine's registry; exit 1 on a breaking change.

    Each declared version is new (it would be registered), unchanged, or blocked: it breaks its
    type's compatibility rule against the registered versions (the path and rule are named).
    """
    from setpiece.schemas._registry import SchemaRegistry, plan_schemas

    async def body(stack: Any, db: Engine) -> list[Any]:
        return await plan_schemas(stack.schemas, SchemaRegistry(db))

    changes = run_async(with_engine(target, engine, store, body, existing=False))
    if json_out:
        print_json([{"action": c.action, "type": c.type, "version": c.version,
                     "detail": c.detail} for c in changes])
    else:
        marks = {"add": "[green]+ new      [/]", "unchanged": "[dim]= unchanged[/]",
                 "blocked": "[red]! breaking [/]"}
        for c in changes:
            out.print(f"  {marks[c.action]} {escape(c.type)} v{c.version}  "
                      f"[dim]({escape(c.detail)})[/]")
        if not changes:
            out.print("the stack declares no schemas")
    if any(c.action == "blocked" for c in changes):
        raise typer.Exit(1)


@guarded
def codegen(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="The event type.")],
    target: Annotated[str | None, typer.Option(
        "--stack", metavar="MODULE:STACK",
        help="The stack (its engine; and its declared schema if none is registered).")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    version: Annotated[int | None, typer.Option(
        "--version", metavar="N", help="This version (default: the latest).")] = None,
    pydantic: Annotated[bool, typer.Option(
        "--pydantic", help="A pydantic model instead of a msgspec Struct.")] = False,
    output: OutputOpt = None,
) -> None:
    """Write a msgspec Struct (or a pydantic model) for the registered schema of TYPE."""
    from setpiece.engine import open_engine
    from setpiece.schemas._codegen import generate
    from setpiece.schemas._registry import SchemaRegistry

    stack = load_stack(target) if target is not None else None
    url = engine_url(stack.name if stack is not None else None, engine)

    async def registered() -> list[Any]:
        db = await open_engine(url, store=store_url(store))
        try:
            return await SchemaRegistry(db).versions(event_type)
        finally:
            await db.close()

    documents = {r.version: r.document for r in run_async(registered())}
    if not documents and stack is not None:
        documents = {s.version: s.document for s in stack.schemas.get(event_type, ())}
    if not documents:
        raise CliError(f"no schema of event type {event_type!r} is registered in {url}")
    chosen = max(documents) if version is None else version
    if chosen not in documents:
        raise CliError(f"{event_type!r} has no version {chosen} "
                       f"(versions: {', '.join(map(str, sorted(documents)))})")
    _write(generate(documents[chosen], event_type, pydantic=pydantic), output)


@guarded
def asyncapi(target: Target, output: OutputOpt = None) -> None:
    """Print the stack's AsyncAPI 3.0 document (JSON): channels, operations, messages."""
    import json

    from setpiece.schemas.asyncapi import asyncapi_document

    stack = load_stack(target)
    _write(json.dumps(asyncapi_document(stack), indent=2), output)


def register(app: Typer) -> None:
    """Add ``setpiece schema ...`` and ``setpiece asyncapi`` to the root command."""
    group = Typer(name="schema", help="Event schemas: discover, check, codegen.",
                  no_args_is_help=True)
    group.command()(discover)
    group.command()(check)
    group.command()(codegen)
    app.add_typer(group)
    app.command()(asyncapi)
