"""``setpiece dev`` and ``setpiece run``: the whole stack with reload and a live feed, and the
production worker."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

from setpiece.cli._common import CliError, check_target, engine_url, load_stack, store_url
from setpiece.cli._console import guarded, state
from setpiece.cli._engines import run_async
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, StoreOpt, Target

__all__ = ["dev", "register", "run"]


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
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", metavar="PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (turns metrics on).",
    )] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", metavar="HOST", help="Interface for --metrics-port.",
    )] = "127.0.0.1",
    otlp: Annotated[str | None, typer.Option(
        "--otlp", metavar="URL", envvar="SETPIECE_OTLP", show_envvar=True,
        help="Export traces over OTLP/HTTP to URL, e.g. http://collector:4318 (turns tracing "
        "on).",
    )] = None,
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
    if metrics_port is not None or otlp is not None:
        stack.observe = _observability(stack.observe, metrics=metrics_port is not None,
                                       otlp=otlp)

    def ready(rt: Any) -> None:
        if observer is not None:
            observer.attach(rt)

    run_async(serve(stack, engine=url, store=store_url(store), config=config, on_ready=ready,
                    report_assignments=not quiet,
                    stats_interval=None if quiet or not stats_interval else stats_interval,
                    metrics=None if metrics_port is None else (metrics_host, metrics_port)))


def _observability(declared: Any, *, metrics: bool, otlp: str | None) -> Any:
    """The stack's Observability with what the command line turns on added to it."""
    from setpiece.errors import ConfigError
    from setpiece.observability import Observability

    base = declared or Observability(metrics=False)
    try:
        return Observability(
            metrics=base.metrics or metrics,
            tracing=base.tracing or otlp is not None,
            tracer_provider=None if otlp is not None else base.tracer_provider,
            otlp=otlp or base.otlp,
            service_name=base.service_name,
        )
    except ConfigError as exc:
        raise CliError(f"--otlp: {exc}") from None


def register(app: Typer) -> None:
    """Add ``setpiece dev`` and ``setpiece run`` to the root command."""
    app.command()(dev)
    app.command()(run)
