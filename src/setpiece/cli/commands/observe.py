"""``setpiece slo`` and ``setpiece top``: where the SLOs stand, and a live table of handlers and
routes."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target
from setpiece.engine.contract import Engine

__all__ = ["register", "slo", "top"]


def register(app: Typer) -> None:
    """Add ``setpiece slo`` and ``setpiece top`` to the root command."""
    app.command()(slo)
    app.command()(top)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return "+Inf" if value == float("inf") else f"<={value * 1000:g}ms"


@guarded
def slo(target: Target, engine: EngineOpt = None, store: StoreOpt = None,
        json_out: JsonOpt = False) -> None:
    """The stack's SLOs: error budget remaining, burn rates, alerts firing (every worker's
    counts, from the engine)."""
    from setpiece.cli.observing import slo_statuses

    async def body(stack: Any, db: Engine) -> list[Any]:
        return await slo_statuses(stack, db)

    statuses = run_async(with_engine(target, engine, store, body))
    if json_out:
        print_json([s.to_dict() for s in statuses])
        return
    table = Table("target", "objective", "latency", "good", "bad", "budget left",
                  "burn 5m", "burn 1h", "burn 6h", "burn 3d", "firing")
    for s in statuses:
        rates = s.burn_rates
        table.add_row(s.target, f"{s.objective:.3%}",
                      "-" if s.latency is None else f"{s.latency:g}s", str(s.good), str(s.bad),
                      _pct(s.budget_remaining), *(f"{rates[w]:.2f}x" for w in
                                                  ("5m", "1h", "6h", "3d")),
                      ", ".join(s.firing) or "-")
    out.print(table)


@guarded
def top(
    target: Target,
    metrics: Annotated[str, typer.Option(
        "--metrics", metavar="URL",
        help="A runtime's metrics: http://HOST:PORT/metrics of `setpiece run --metrics-port`, "
        "or a gateway's /metrics (with --token).",
    )] = "http://127.0.0.1:9464/metrics",
    token: Annotated[str | None, typer.Option(
        "--token", envvar="SETPIECE_TOKEN", metavar="JWT",
        help="Bearer token with the scope setpiece:observe (a gateway with auth).")] = None,
    interval: Annotated[float, typer.Option(
        "--interval", metavar="SECONDS", help="Seconds between readings.")] = 2.0,
    once: Annotated[bool, typer.Option(
        "--once", help="Print one table (two readings --interval apart) and exit.")] = False,
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """A live table of handlers and routes: rate, p50/p99, errors, lag, SLO budget."""
    from setpiece.cli.observing import rows, scrape, slo_statuses

    def budgets() -> dict[str, float]:
        async def body(stack: Any, db: Engine) -> dict[str, float]:
            if stack.observe is None or not stack.observe.slos:
                return {}
            return {s.target: s.budget_remaining for s in await slo_statuses(stack, db)}

        return run_async(with_engine(target, engine, store, body))

    def table(before: Any, after: Any) -> Table:
        grid = Table("handler / route", "rate/s", "p50", "p99", "errors", "lag", "SLO budget",
                     title=f"setpiece top  {time.strftime('%H:%M:%S')}")
        for row in rows(before, after, budgets()):
            grid.add_row(row.name, f"{row.rate:.1f}", _secs(row.p50), _secs(row.p99),
                         _pct(row.errors), "-" if row.lag is None else f"{row.lag:g}",
                         _pct(row.budget))
        return grid

    before = scrape(metrics, token)
    if once:
        time.sleep(interval)
        out.print(table(before, scrape(metrics, token)))
        return
    with Live(console=out, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                after = scrape(metrics, token)
                live.update(table(before, after), refresh=True)
                before = after
        except KeyboardInterrupt:
            pass



