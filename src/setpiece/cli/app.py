"""The ``setpiece`` command: typer commands over the small modules beside this one."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from setpiece.cli._common import (
    USAGE_ERROR,
    CliError,
    check_target,
    describe,
    engine_url,
    exit_code,
    load_stack,
    open_existing,
    store_url,
)
from setpiece.cli._help import Typer
from setpiece.engine.contract import Engine, Record

__all__ = ["app"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

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

# -- options shared by the commands -------------------------------------------------------------

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


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_engine(
    target: str, engine: str | None, store: str | None,
    body: Callable[[Any, Engine], Awaitable[T]], *, existing: bool = True,
) -> T:
    """Load the stack, open its engine (which must exist when only looking), run ``body``."""
    from setpiece.engine import open_engine

    stack = load_stack(target)
    url = engine_url(stack.name, engine)
    db = await (open_existing(url, store_url(store)) if existing
                else open_engine(url, store=store_url(store)))
    try:
        return await body(stack, db)
    finally:
        await db.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


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


# -- dev / run ----------------------------------------------------------------------------------


@app.command()
@guarded
def dev(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    watch: Annotated[list[str] | None, typer.Option(
        "--watch", metavar="DIR",
        help="Folder to watch for *.py changes (repeatable; default: the current one).",
    )] = None,
    grace: Annotated[float, typer.Option(
        "--grace", metavar="SECONDS",
        help="Seconds a restart waits for batches in flight before handing them back.",
    )] = 2.0,
    json_lines: Annotated[bool, typer.Option("--json", help="Feed as JSON lines.")] = False,
    http: Annotated[str, typer.Option(
        "--http", metavar="HOST:PORT",
        help="HOST:PORT for the HTTP gateway, served in the same process when the "
        "stack has HTTP routes ('' to turn it off).",
    )] = "127.0.0.1:8000",
) -> None:
    """Run the whole stack, reload on code change, and show a live feed of what flows."""
    try:
        import watchfiles  # noqa: F401 - checked here for a clear message
    except ImportError:
        raise CliError("setpiece dev needs watchfiles: pip install 'setpiece[cli]'") from None
    check_target(target)  # a typo fails now; errors inside the code show in the child
    _check_engine(engine, store)  # so does an engine that no code change can fix
    from setpiece.cli.dev import run_dev

    raise typer.Exit(run_dev(
        target, engine=engine, store=store, watch=watch or [], app_dir=None, grace=grace,
        json_lines=json_lines, debug=state.debug, http=http or None,
    ))


def _check_engine(engine: str | None, store: str | None) -> None:
    """Open and close the engine a URL names: a bad URL (exit 2) or an unreachable server
    (exit 3) fails here, before ``dev`` starts waiting for code changes. Without a URL, the
    default is an SQLite file, which the child creates."""
    from setpiece.engine import open_engine

    url = engine or os.environ.get("SETPIECE_ENGINE")
    if not url:
        return

    async def probe() -> None:
        db = await open_engine(url, store=store_url(store))
        await db.close()

    run_async(probe())


@app.command()
@guarded
def run(
    target: Target,
    service: Annotated[list[str] | None, typer.Option(
        "--service", metavar="NAME",
        help="Run only this service's handlers (repeatable; default: all, and rule targets).",
    )] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    member: Annotated[str | None, typer.Option(
        "--member", metavar="NAME",
        help="This worker's name in consumer groups (default: host-pid-random).")] = None,
    heartbeat: Annotated[float | None, typer.Option(
        "--heartbeat", metavar="SECONDS", envvar="SETPIECE_HEARTBEAT", show_envvar=True,
        help="Seconds between group heartbeats (default 1).")] = None,
    session_timeout: Annotated[float | None, typer.Option(
        "--session-timeout", metavar="SECONDS", envvar="SETPIECE_SESSION_TIMEOUT", show_envvar=True,
        help="Seconds of silence after which a worker's partitions move (default 10).")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", metavar="N",
        help="Deliveries of different keys in flight per consumer (default 16).",
    )] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", metavar="N",
        help="Records read and committed per partition per turn (default 256).",
    )] = None,
    grace: Annotated[float | None, typer.Option(
        "--grace", metavar="SECONDS",
        help="Seconds a stop waits for batches in flight (default 10).")] = None,
    feed: Annotated[bool, typer.Option("--feed", help="Show every delivery, as in dev.")] = False,
    log_level: Annotated[str, typer.Option(
        "--log-level", metavar="LEVEL", help="debug, info, warning, error.")] = "info",
    stats_interval: Annotated[float, typer.Option(
        "--stats-interval", metavar="SECONDS",
        help="Seconds between the lines that give the delivery rate (0: none).")] = 10.0,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q",
        help="No start-up summary, rate or partition lines: warnings and errors only.")] = False,
) -> None:
    """Run a production worker. Workers of one stack share partitions; SIGTERM drains and exits.

    It logs a start-up summary (engine, consumer groups and the partitions each owns, HTTP),
    then a line with the delivery rate every --stats-interval seconds while events flow.
    It serves no HTTP: setpiece gateway runs the handlers and serves the routes.
    """

    def early_stop(signum: int, frame: object) -> None:  # before the runtime started: no work
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, early_stop)
    from setpiece.cli.feed import Feed
    from setpiece.cli.worker import serve
    from setpiece.runtime.config import RuntimeConfig

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise CliError(f"--log-level {log_level!r}: use debug, info, warning or error")
    if stats_interval < 0:
        raise CliError("--stats-interval must be 0 (no rate lines) or more")
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    log = logging.getLogger("setpiece.cli")
    if quiet:
        log.setLevel(max(level, logging.WARNING))
    stack = load_stack(target)
    unknown = sorted(set(service or ()) - set(stack.services))
    if unknown:
        raise CliError(f"--service: the stack has no service {', '.join(map(repr, unknown))} "
                       f"(services: {sorted(stack.services)})")
    options: dict[str, Any] = {"services": tuple(service or ())}
    for key, value in (("member", member), ("heartbeat_interval", heartbeat),
                       ("session_timeout", session_timeout), ("concurrency", concurrency),
                       ("batch_size", batch_size), ("shutdown_grace", grace)):
        if value is not None:
            options[key] = value
    if heartbeat is not None and session_timeout is None:
        options["session_timeout"] = max(10.0, heartbeat * 3)
    config = RuntimeConfig(**options)
    url = engine_url(stack.name, engine)
    observer = Feed(sys.stdout) if feed else None

    def ready(rt: Any) -> None:
        if observer is not None:
            observer.attach(rt)

    run_async(serve(stack, engine=url, store=store_url(store), config=config, on_ready=ready,
                    report_assignments=not quiet,
                    stats_interval=None if quiet or not stats_interval else stats_interval))


# -- publish / replay ---------------------------------------------------------------------------


@app.command()
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


@app.command()
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


# -- tail ---------------------------------------------------------------------------------------


@app.command()
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


# -- inspect ------------------------------------------------------------------------------------


@app.command()
@guarded
def inspect(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show streams, consumer groups and their lag, buses and rules, services and handlers."""
    from setpiece.cli.inspecting import inspect_stack

    data = run_async(with_engine(target, engine, store, inspect_stack))
    if json_out:
        print_json(data)
        return
    out.print(f"[bold]stack {escape(data['stack'])}[/] on {escape(data['engine'])}")
    table = Table("stream", "partitions", "records", "end offsets", title="streams",
                  title_justify="left")
    for s in data["streams"]:
        table.add_row(s["name"], str(s["partitions"]), str(s["records"]),
                      " ".join(map(str, s["end_offsets"])))
    out.print(table)
    table = Table("group", "stream", "committed", "lag", title="consumer groups",
                  title_justify="left")
    for g in data["groups"]:
        lag = str(g["lag"])
        table.add_row(g["group"], g["stream"], " ".join(map(str, g["committed"])),
                      f"[yellow]{lag}[/]" if g["lag"] else lag)
    out.print(table)
    table = Table("bus", "rule / handler", "pattern", "targets", title="buses",
                  title_justify="left")
    for b in data["buses"]:
        for r in b["rules"]:
            table.add_row(b["name"], f"rule {r['name']}", json.dumps(r["pattern"]),
                          ", ".join(r["targets"]) + (" (transformed)" if r["transform"] else ""))
        for h in b["handlers"]:
            table.add_row(b["name"], h, "", "handler")
        if not b["rules"] and not b["handlers"]:
            table.add_row(b["name"], "[dim]nothing listens[/]", "", "")
    out.print(table)
    table = Table("service", "handler", "kind", "on", "lag", title="services",
                  title_justify="left")
    for svc in data["services"]:
        for h in svc["handlers"]:
            if h["kind"] == "event":
                on = f"bus {h['bus']} {json.dumps(h['pattern'])}"
            elif h["kind"] == "stream":
                on = f"stream {h['stream']}"
            else:
                on = f"every {h['every']}s" if h.get("every") else f"cron {h.get('cron')}"
            lag = h.get("lag")
            table.add_row(svc["name"], h["name"], h["kind"], escape(on),
                          "-" if lag is None else str(lag))
    out.print(table)


# -- plan / apply ---------------------------------------------------------------------------------

_MARKS = {"add": "[green]+ add      [/]", "modify": "[yellow]~ modify   [/]",
          "blocked": "[red]! blocked  [/]", "unchanged": "[dim]= unchanged[/]",
          "delete": "[red]- delete   [/]"}


def _plan(target: str, engine: str | None, store: str | None) -> tuple[Any, Any, str]:
    from setpiece.cli.planning import make_plan
    from setpiece.engine import open_engine

    stack = load_stack(target)
    url = engine_url(stack.name, engine)
    pg = store_url(store)
    plan = run_async(make_plan(stack, url, pg, lambda: open_engine(url, store=pg)))
    return stack, plan, url


def _print_plan(plan: Any, *, unchanged: bool) -> None:
    out.print(f"[bold]change set[/] for {escape(plan.engine)}")
    for change in plan.changes:
        if change.action == "unchanged" and not unchanged:
            continue
        detail = f"  [dim]({escape(change.detail)})[/]" if change.detail else ""
        out.print(f"  {_MARKS[change.action]} {change.kind:<7} {escape(change.name)}{detail}")
    out.print(plan.summary())


AllOpt = Annotated[bool, typer.Option("--all", help="List unchanged items too.")]


@app.command()
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
    PostgreSQL schema): add, modify, blocked (cannot change in place), unchanged, delete.
    """
    _stack, change_set, _url = _plan(target, engine, store)
    if json_out:
        print_json({"engine": change_set.engine, "summary": change_set.summary(),
                    "changes": [c.as_dict() for c in change_set.changes]})
    else:
        _print_plan(change_set, unchanged=show_all)


@app.command()
@guarded
def apply(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    allow_delete: Annotated[bool, typer.Option(
        "--allow-delete",
        help="Also delete streams and groups the stack no longer declares (asks first).",
    )] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    show_all: AllOpt = False,
) -> None:
    """Apply the change set: create and reconfigure what the stack declares.

    Never deletes without --allow-delete, and then only streams and groups the stack no longer
    declares, after confirmation (or --yes). Refuses changes that cannot be made in place.
    """
    from setpiece.cli.planning import apply_changes
    from setpiece.engine import open_engine

    stack, change_set, url = _plan(target, engine, store)
    _print_plan(change_set, unchanged=show_all)
    blocked = change_set.of("blocked")
    if blocked:
        raise CliError(f"cannot apply: {', '.join(c.name for c in blocked)} cannot change in "
                       "place (declare a new stream and migrate)")
    deletes = change_set.of("delete")
    if deletes and not allow_delete:
        err.print(f"[yellow]{len(deletes)} deletion(s) skipped[/]: pass --allow-delete to "
                  "delete what the stack no longer declares")
    elif deletes and not yes:
        names = ", ".join(c.name for c in deletes)
        if not typer.confirm(f"delete {names} and the data they hold?", default=False):
            raise CliError("nothing applied (deletion not confirmed)")
    if not change_set.pending or (
        not allow_delete and not change_set.of("add", "modify")
    ):
        out.print("nothing to apply")
        return

    async def go() -> list[Any]:
        db = await open_engine(url, store=store_url(store))
        try:
            return await apply_changes(stack, db, change_set, allow_delete=allow_delete)
        finally:
            await db.close()

    done = run_async(go())
    out.print(f"applied {len(done)} change(s)")


# -- dlq ----------------------------------------------------------------------------------------


@app.command()
@guarded
def gateway(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    advertise: Annotated[str | None, typer.Option(
        "--advertise", metavar="URL",
        help="The URL other gateways reach this one at (default: host and port).",
    )] = None,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL",
        help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the stack's HTTP gateway (auth, routes, version routing, breakers) with uvicorn.

    It also runs the stack's handlers, like `setpiece run`; start several behind a load
    balancer, or on several ports, and they find each other through the engine's registry.
    """
    stack = load_stack(target)
    from setpiece.gateway.server import serve

    serve(stack, host, port, engine=engine_url(stack.name, engine), store=store_url(store),
          advertise=advertise, log_level=log_level)


@app.command()
@guarded
def token(
    subject: Annotated[str, typer.Option("--subject", "--sub", help="The user (sub claim).")],
    secret: Annotated[str, typer.Option(
        "--secret", envvar="SETPIECE_JWT_SECRET", show_envvar=True,
        help="The HS256 secret the stack's JWTAuth uses.",
    )],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", metavar="SCOPE", help="A scope to grant (repeatable).")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="The tenant claim.")] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="The iss claim.")] = None,
    audience: Annotated[str | None, typer.Option("--audience", help="The aud claim.")] = None,
    expires_in: Annotated[int, typer.Option(
        "--expires-in", metavar="SECONDS", help="Seconds until the token expires.")] = 3600,
) -> None:
    """Mint a development bearer token (HS256) for a stack whose auth is JWTAuth(secret=...)."""
    from setpiece.gateway.auth import mint_token

    out.print(mint_token(secret, subject=subject, scopes=scope or [], tenant=tenant,
                         issuer=issuer, audience=audience, expires_in=expires_in))


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


# The workflow and task commands live in their own module; importing it registers them.
from setpiece.cli import workflows as _workflow_commands  # noqa: E402, F401
