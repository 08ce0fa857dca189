"""``setpiece gateway`` and ``setpiece token``: serve the stack's HTTP gateway, and mint a
development bearer token for a gateway whose auth is ``JWTAuth``."""

from __future__ import annotations

from typing import Annotated

import typer

from setpiece.cli._common import engine_url, load_stack, store_url
from setpiece.cli._console import guarded, out
from setpiece.cli._help import Typer
from setpiece.cli._options import EngineOpt, StoreOpt, Target

__all__ = ["gateway", "register", "token"]


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


def register(app: Typer) -> None:
    """Add ``setpiece gateway`` and ``setpiece token`` to the root command."""
    app.command()(gateway)
    app.command()(token)
