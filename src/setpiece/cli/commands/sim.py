"""``setpiece sim``: simulate an architecture (a Spigo file or a stack) in simulated time."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from setpiece.cli._common import CliError, load_stack
from setpiece.cli._console import err, guarded, out
from setpiece.cli._help import Typer

__all__ = ["register", "sim"]


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


@guarded
def sim(
    target: Annotated[str, typer.Argument(
        metavar="ARCH.json|MODULE:STACK", show_default=False,
        help="A Spigo architecture file, or a stack ('package.module:stack').")],
    scale: Annotated[float, typer.Option(
        "--scale", metavar="N", help="Multiply every instance count.")] = 1.0,
    instances: Annotated[int | None, typer.Option(
        "--instances", metavar="N",
        help="Scale to about this many instances (instead of --scale).")] = None,
    duration: Annotated[float, typer.Option(
        "--duration", metavar="SECONDS", help="Simulated seconds.")] = 60.0,
    rate: Annotated[float | None, typer.Option(
        "--rate", metavar="REQ_PER_S",
        help="Outside requests per simulated second (default: half of what the busiest "
        "service can take).")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed.")] = 0,
    chaos: Annotated[Path | None, typer.Option(
        "--chaos", metavar="SPEC.json", help="Chaos and code pushes at simulated times.")] = None,
    costs: Annotated[Path | None, typer.Option(
        "--costs", metavar="COSTS.json", help="Cost model (latency, errors, capacity).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    zipkin: Annotated[Path | None, typer.Option(
        "--zipkin", metavar="FILE", help="Write sampled traces as Zipkin v2 JSON.")] = None,
    otlp: Annotated[Path | None, typer.Option(
        "--otlp", metavar="FILE", help="Write sampled traces as OTLP JSON.")] = None,
    graph: Annotated[Path | None, typer.Option(
        "--graph", metavar="FILE", help="Write the architecture graph as JSON.")] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", metavar="FILE",
        help="Write the full report (services, edges, zones, timeline) as JSON.")] = None,
    trace_every: Annotated[int, typer.Option(
        "--trace-every", metavar="N",
        help="Trace one outside request in N (with --zipkin or --otlp).")] = 1000,
    no_breakers: Annotated[bool, typer.Option(
        "--no-breakers", help="Turn circuit breakers off.")] = False,
    autoscale: Annotated[float | None, typer.Option(
        "--autoscale", metavar="TARGET",
        help="Autoscale every service to this utilisation (0..1), measured every 10 s.")] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Show the run animating in a browser (a page and a WebSocket); "
        "serve until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option(
        "--port", metavar="N", help="With --serve: the port (default: a free one).")] = 0,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDRESS", help="With --serve: the address to listen on.")
    ] = "127.0.0.1",
    speed: Annotated[str | None, typer.Option(
        "--speed", metavar="X",
        help="With --serve: simulated seconds per wall second, or 'max' (default: the run "
        "plays in about 30 s).")] = None,
) -> None:
    """Simulate an architecture at scale in simulated time: discovery, load balancing, queues,
    timeouts, retries, breakers, autoscaling, code pushes and chaos."""
    from setpiece import sim as simulator
    from setpiece.sim import output as reporting
    from setpiece.sim.stack import from_stack, load_costs

    started = time.perf_counter()
    cost_data = load_costs(costs) if costs else None
    if target.endswith(".json") or Path(target).is_file():
        spigo_costs = None
        if cost_data is not None:
            from setpiece.sim.stack import parse_cost

            spigo_costs = {
                name: parse_cost(entry, f"cost model nodes.{name}")
                for name, entry in dict(cost_data.get("nodes", {})).items()}
        model = simulator.load_spigo(target, scale=1.0, costs=spigo_costs)
        if instances is not None:
            scale = instances / max(1, model.instances)
        if scale != 1.0:
            model = simulator.load_spigo(target, scale=scale, costs=spigo_costs)
    else:
        if scale != 1.0 or instances is not None:
            raise CliError("--scale and --instances apply to Spigo files; a stack's instances "
                           "come from its cost model (--costs)")
        model = from_stack(load_stack(target), cost_data)
    if autoscale is not None:
        policy = simulator.Autoscale(target=autoscale)
        model = replace(model, services=tuple(
            replace(spec, autoscale=policy) for spec in model.services))
    config = simulator.SimConfig(
        duration=duration, rate=rate, seed=seed,
        chaos=simulator.load_chaos(chaos) if chaos else (),
        breakers=not no_breakers,
        trace_every=trace_every if (zipkin or otlp) else 0,
    )
    if model.calls is not None:  # the stack's own timeouts, retries and breakers
        config = replace(config, calls=model.calls)
    run = simulator.Simulation(model, config)
    if serve:
        _serve(run, started, host, port, speed, json_out,
               lambda: _finish(run, zipkin, otlp, graph, report))
        return
    if (port or speed is not None or host != "127.0.0.1"):
        raise CliError("--port, --host and --speed apply to --serve")
    if err.is_terminal and not json_out:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("simulating {task.fields[arch]}"), BarColumn(),
                      TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("sim", total=duration, arch=model.name)
            run.run(lambda now: bar.update(task, completed=now))
    else:
        run.run()
    wall = time.perf_counter() - started
    full = _finish(run, zipkin, otlp, graph, report)
    summary = reporting.summary(run, wall, full)
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return
    out.print(f"[bold]{escape(model.name)}[/]: {summary['instances']} instances, "
              f"{summary['messages']} messages in {duration:g} simulated s "
              f"({wall:.2f} s wall, {summary['messages_per_second']} msg/s, "
              f"peak {summary['peak_rss_bytes'] / 2**20:.0f} MiB)")
    out.print(f"outside requests: {summary['requests']}, errors {summary['errors']}, "
              f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms")
    table = Table("service", "instances", "requests", "errors", "p50 ms", "p99 ms",
                  "utilisation", title="services", title_justify="left")
    for name, s in full["services"].items():
        table.add_row(escape(name), str(s["instances"]), str(s["requests"]), str(s["errors"]),
                      f"{s['p50_ms']:g}", f"{s['p99_ms']:g}", f"{s['utilisation']:.2f}")
    out.print(table)
    for line in full["log"]:
        out.print(f"[dim]{escape(line)}[/]")


def _finish(run: Any, zipkin: Path | None, otlp: Path | None, graph: Path | None,
            report: Path | None) -> dict[str, Any]:
    """Write the files asked for; the full report of the run."""
    from setpiece.sim import output as reporting

    full = reporting.report(run)
    if zipkin:
        _write(zipkin, reporting.dumps(reporting.zipkin(run)))
    if otlp:
        _write(otlp, reporting.dumps(reporting.otlp(run)))
    if graph:
        _write(graph, reporting.dumps(reporting.graph(run)))
    if report:
        _write(report, reporting.dumps(full))
    return full


def _serve(run: Any, started: float, host: str, port: int, speed: str | None, json_out: bool,
           finish: Callable[[], dict[str, Any]]) -> None:
    """``--serve``: play the run in the browser; write the files when it ends."""
    from setpiece.sim import output as reporting
    from setpiece.sim.serve import DEFAULT_PLAY_SECONDS, LiveRun, parse_speed, serve

    if not 0 <= port <= 65535:
        raise CliError(f"--port: expected 0..65535, got {port}")
    pace = (parse_speed(speed, "--speed") if speed is not None
            else run.config.duration / DEFAULT_PLAY_SECONDS)

    def done(_wall: float) -> dict[str, Any]:  # the wall time of --json: since the start
        try:
            summary = reporting.summary(run, time.perf_counter() - started, finish())
        except CliError as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            summary = reporting.summary(run, time.perf_counter() - started)
        if json_out:
            sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            sys.stdout.flush()
        else:
            out.print(f"run over: {summary['requests']} outside requests, "
                      f"{summary['errors']} errors, p99 {summary['p99_ms']} ms "
                      "(still serving; Ctrl-C to stop)")
        return summary

    def announce(url: str) -> None:
        (err if json_out else out).print(f"serving the run of {escape(run.model.name)} at "
                                         f"{url} (Ctrl-C to stop)")
        (err if json_out else out).file.flush()

    serve(LiveRun(run, pace, done), host=host, port=port, announce=announce)


def register(app: Typer) -> None:
    """Add ``setpiece sim`` to the root command."""
    app.command()(sim)
