"""``setpiece publish``, ``replay`` and ``tail``: put events on a bus or stream, send archived
ones through the rules again, and follow what arrives."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from setpiece.cli._common import CliError, load_stack
from setpiece.cli._console import err, guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import (
    BusOpt,
    EngineOpt,
    JsonOpt,
    PublishJsonOpt,
    StoreOpt,
    StreamOpt,
    Target,
)
from setpiece.engine.contract import Engine, Record

__all__ = ["publish", "register", "replay", "tail"]


@guarded
def publish(
    target: Target,
    source: Annotated[str | None, typer.Argument(
        metavar="[-]", help="'-' reads the event(s) from stdin.")] = None,
    event: Annotated[str | None, typer.Option("--event", "-e", metavar="JSON",
        help="The event as JSON.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", metavar="FILE", help="A file of JSON event(s).")] = None,
    bus: BusOpt = None,
    stream: StreamOpt = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: PublishJsonOpt = False,
    example: Annotated[str | None, typer.Option(
        "--example", metavar="TYPE",
        help="Print a sample event of TYPE that the stack's handlers accept, built from the "
        "data model they declare, and publish nothing.")] = None,
) -> None:
    """Publish events (CloudEvents JSON or EventBridge-shaped) and print their stored ids.

    The input is one JSON object, an array of them, or one object per line. --example TYPE
    prints an event to start from: setpiece publish M:S --example TYPE > event.json.
    """
    from setpiece.cli.publishing import parse_events
    from setpiece.cli.publishing import publish as do_publish

    given = [x for x in (event is not None, file is not None, source is not None) if x]
    if example is not None:
        if given:
            raise CliError("--example prints an event and publishes nothing: "
                           "give no --event, --file or -")
        _print_example(target, example)
        return
    if len(given) != 1:
        raise CliError("give the event one way: --event JSON, --file FILE, or - for stdin "
                       "(--example TYPE prints one to start from)")
    if source is not None and source != "-":
        raise CliError(f"unexpected argument {source!r}; use - to read stdin")
    if event is not None:
        text, where = event, "--event"
    elif file is not None and str(file) != "-":
        try:
            text, where = file.read_text(), str(file)
        except OSError as exc:
            raise CliError(f"--file {file}: {exc.strerror or exc}") from None
    else:
        text, where = sys.stdin.read(), "stdin"
    events = parse_events(text, where)

    async def body(stack: Any, db: Engine) -> list[Any]:
        return await do_publish(stack, db, events, bus=bus, stream=stream)

    stored = run_async(with_engine(target, engine, store, body, existing=False))
    if json_out:
        print_json([{"id": e.id, "type": e.type, "source": e.source} for e in stored])
    else:
        for e in stored:
            out.print(e.id)


def _print_example(target: str, event_type: str) -> None:
    from setpiece.cli.samples import example_event

    found = example_event(load_stack(target), event_type)
    print_json(found.event)
    for warning in found.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}; edit the example before publishing it")


@guarded
def replay(
    target: Target,
    start: Annotated[str, typer.Option(
        "--start", metavar="TIME", help="ISO 8601 time, e.g. 2024-05-01T12:00:00Z.")],
    bus: BusOpt = None,
    end: Annotated[str | None, typer.Option("--end", metavar="TIME",
        help="ISO 8601 time (default: now).")] = None,
    rule: Annotated[str | None, typer.Option(
        "--rule", metavar="RULE",
        help="Only this rule, or handler (service.handler), receives the events.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME",
        help="Replay name; events are delivered once per name (default: unique).")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Send a bus's archived events from [start, end) through its rules again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from setpiece.cli.publishing import parse_time
    from setpiece.cli.publishing import replay as do_replay

    t0 = parse_time(start, "--start")
    t1 = parse_time(end, "--end") if end is not None else None
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("replay", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        async def body(stack: Any, db: Engine) -> int:
            return await do_replay(stack, db, bus=bus or stack.default_bus, start=t0, end=t1,
                                   rule=rule, name=name, progress=report)

        count = run_async(with_engine(target, engine, store, body))
    out.print(f"replayed {count} event(s)")


@guarded
def tail(
    target: Target,
    bus: BusOpt = None,
    stream: StreamOpt = None,
    pattern: Annotated[str | None, typer.Option(
        "--pattern", "-p", metavar="JSON",
        help='EventBridge pattern as JSON, e.g. \'{"type": ["order_placed"]}\'.',
    )] = None,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="Start at the oldest record held, not at the end.")] = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", metavar="N", help="Stop after N records.")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", help="Keep waiting for new records (default) or stop at the end.",
    )] = True,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Follow a bus or stream, showing the records that match a pattern. Starts no consumer."""
    from setpiece import patterns
    from setpiece.bus import bus_stream_name
    from setpiece.cli.inspecting import record_dict
    from setpiece.cli.inspecting import tail as do_tail
    from setpiece.errors import PatternError

    if bus is not None and stream is not None:
        raise CliError("name a bus or a stream, not both")
    try:
        compiled = patterns.compile(pattern) if pattern is not None else None
    except PatternError as exc:
        raise PatternError(f"--pattern: {exc}") from None
    if limit is not None and limit < 1:
        raise CliError("--limit must be at least 1")

    def emit(record: Record) -> None:
        data = record_dict(record)
        if json_out:
            sys.stdout.write(json.dumps(data, default=str) + "\n")
            sys.stdout.flush()
            return
        stamp = datetime.fromtimestamp(record.timestamp).strftime("%H:%M:%S.%f")[:-3]
        where = f"{record.stream}[{record.partition}]@{record.offset}"
        ev = data.get("event")
        if ev is None:
            body = json.dumps(data.get("value", data.get("raw")), default=str)
            out.print(f"[dim]{stamp}[/] [cyan]{escape(where)}[/] {escape(body)}")
            return
        payload = escape(json.dumps(ev.get("data"), default=str))
        out.print(f"[dim]{stamp}[/] [cyan]{escape(where)}[/] [magenta]{escape(ev['type'])}[/] "
                  f"[dim]from[/] {escape(ev['source'])} [dim]id[/] {escape(ev['id'])} {payload}")

    async def body(stack: Any, db: Engine) -> int:
        if stream is not None:
            name = stream
        else:
            chosen = bus or stack.default_bus
            if chosen not in stack.buses:
                raise CliError(f"the stack has no bus {chosen!r} (buses: {sorted(stack.buses)})")
            name = bus_stream_name(chosen)
        return await do_tail(db, name, pattern=compiled, from_beginning=from_beginning,
                             limit=limit, follow=follow, emit=emit)

    try:
        run_async(with_engine(target, engine, store, body))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register(app: Typer) -> None:
    """Add ``setpiece publish``, ``replay`` and ``tail`` to the root command."""
    app.command()(publish)
    app.command()(replay)
    app.command()(tail)
