"""``setpiece version status | promote | abort | share``: the rollouts of a stack's services.

They work on the engine directly (no consumers run): the rollout's state is in the engine, and
every worker of the stack takes a change from its next batch on (see ``docs/versions.md``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from setpiece.cli._console import guarded, out, print_json
from setpiece.cli._engines import run_async, with_engine
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, JsonOpt, StoreOpt, Target
from setpiece.engine.contract import Engine
from setpiece.runtime.versions import VersionReport, Versions
from setpiece.stack import Stack

__all__ = ["register", "version_app"]

version_app = Typer(
    help="Versions of event consumers (canary, shadow): status, promote, abort, share.",
    no_args_is_help=True,
)

ServiceArg = Annotated[str, typer.Argument(
    metavar="SERVICE", show_default=False, help="A service of the stack that has a rollout.")]


def register(app: typer.Typer) -> None:
    """Add ``setpiece version ...`` to the root command."""
    app.add_typer(version_app, name="version")


def _versions(stack: Stack, db: Engine) -> Versions:
    return Versions(db, stack.rollouts)


@version_app.command("status")
@guarded
def version_status(
    target: Target,
    service: Annotated[str | None, typer.Argument(
        metavar="[SERVICE]", show_default=False,
        help="One service (default: every service with a rollout).")] = None,
    engine: EngineOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Each rollout: its state, deliveries and failures per version, shadow comparisons."""

    async def body(stack: Stack, db: Engine) -> list[VersionReport]:
        versions = _versions(stack, db)
        names = [service] if service is not None else versions.services
        return [await versions.report(name) for name in names]

    reports = run_async(with_engine(target, engine, store, body))
    if json_out:
        print_json([r.to_dict() for r in reports])
        return
    if not reports:
        out.print("no rollouts in this stack")
        return
    table = Table("service", "candidate", "mode", "status", "share", "primary", "candidate",
                  "shadow", "reason")
    for r in reports:
        s = r.state
        shadow = f"{r.matched}/{r.compared} matched" if s.mode == "shadow" else "-"
        table.add_row(
            s.service, s.candidate, s.mode, s.status,
            f"{s.share:.0%}" if s.mode == "canary" else "-",
            _rate(r.primary_deliveries, r.primary_failures),
            _rate(r.candidate_deliveries, r.candidate_failures),
            shadow, escape(s.reason or ""),
        )
    out.print(table)
    for r in reports:
        for m in r.mismatches:
            out.print(f"[bold]{escape(r.state.service)}[/] mismatch on event "
                      f"{escape(str(m['event']))} ({escape(str(m['type']))}): primary "
                      f"{escape(str(m['primary']))}, shadow {escape(str(m['shadow']))}")


def _rate(deliveries: int, failures: int) -> str:
    if not deliveries:
        return "0 deliveries"
    return f"{deliveries} deliveries, {failures / deliveries:.1%} failed"


def _change(target: str, engine: str | None, store: str | None, verb: str, service: str,
            *args: Any) -> None:
    async def body(stack: Stack, db: Engine) -> Any:
        return await getattr(_versions(stack, db), verb)(service, *args)

    state = run_async(with_engine(target, engine, store, body))
    share = f", share {state.share:.0%}" if state.mode == "canary" else ""
    out.print(f"{state.service}: version {state.candidate} ({state.mode}) is {state.status}"
              f"{share}")


@version_app.command("promote")
@guarded
def version_promote(
    target: Target, service: ServiceArg, engine: EngineOpt = None, store: StoreOpt = None,
) -> None:
    """Send every delivery of SERVICE to its candidate version, from each worker's next batch."""
    _change(target, engine, store, "promote", service)


@version_app.command("abort")
@guarded
def version_abort(
    target: Target, service: ServiceArg, engine: EngineOpt = None, store: StoreOpt = None,
) -> None:
    """Send every delivery of SERVICE back to its primary version (a shadow stops)."""
    _change(target, engine, store, "abort", service)


@version_app.command("share")
@guarded
def version_share(
    target: Target,
    service: ServiceArg,
    share: Annotated[float, typer.Argument(
        metavar="SHARE", show_default=False, help="The canary's share of keys, in [0, 1].")],
    engine: EngineOpt = None,
    store: StoreOpt = None,
) -> None:
    """Change the share of partition keys an active canary takes."""
    _change(target, engine, store, "set_share", service, share)
