"""``setpiece inspect``: streams, consumer groups and their lag, buses and rules, services and
their handlers, views, as tables or JSON (the data comes from ``setpiece.cli.inspecting``)."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.table import Table

from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target

__all__ = ["inspect", "register"]


@guarded
def inspect(
    target: Target,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show streams, consumer groups and their lag, buses and rules, services and handlers,
    views."""
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
    if data["views"]:
        table = Table("view", "kind", "reads", "emits to", "lag", title="views",
                      title_justify="left")
        for v in data["views"]:
            lag = v.get("lag")
            table.add_row(v["name"], v["kind"] + (f" {v['window']}" if "window" in v else ""),
                          ", ".join(v["reads"]), v.get("emit_to", ""),
                          "-" if lag is None else str(lag))
        out.print(table)


def register(app: Typer) -> None:
    """Add ``setpiece inspect`` to the root command."""
    app.command()(inspect)
