"""The HTTP gateway: routes on services, OAuth2/JWT auth, tenants, discovery, versions, breakers.

::

    svc = Service("notes")

    @svc.get("/notes/{name}", scopes=["notes:read"])
    async def read(name: str, ctx) -> dict: return {"text": await ctx.store.get(name)}

    stack = Stack("app", services=[svc], auth=JWTAuth(secret="dev-secret", audience="app"),
                  routes=VersionRoutes({"notes": {"1": 90, "2": 10}}))
    async with stack.start(engine="memory") as rt:
        app = rt.asgi()                 # the gateway on this runtime, as an ASGI app
    app = stack.asgi()                  # the same, starting its runtime in the ASGI lifespan
    serve(stack, "0.0.0.0", 8000)       # ``setpiece gateway``: uvicorn, registered for discovery

One module per concept: :mod:`~setpiece.gateway.app` (the ASGI app and the request path),
:mod:`~setpiece.gateway.asgi` (bodies, replies, streams and the lifespan),
:mod:`~setpiece.gateway.dispatch` (picking an instance and calling it),
:mod:`~setpiece.gateway.local` (serving a route here), :mod:`~setpiece.gateway.endpoints` (the
extensions' routes), :mod:`~setpiece.gateway.auth` (JWTs), :mod:`~setpiece.gateway.routing`
(version choice), :mod:`~setpiece.gateway.breaker` (breakers),
:mod:`~setpiece.runtime.discovery` (discovery), :mod:`~setpiece.gateway.openapi`,
:mod:`~setpiece.gateway.ingress` (CloudEvents over HTTP), :mod:`~setpiece.gateway.server`.
What a stack declares (``VersionRoutes``, ``CallPolicy``, ``BreakerPolicy``, ``EVENTS_SCOPE``)
is plain data in :mod:`setpiece.http`, re-exported here; the route table in
:mod:`setpiece.route_table`, request decoding in :mod:`setpiece.route_params`.
"""

from __future__ import annotations

from setpiece.gateway.app import EVENTS_SCOPE, Gateway
from setpiece.gateway.auth import AuthError, Identity, JWTAuth, mint_token
from setpiece.gateway.breaker import Breaker, BreakerPolicy, CallPolicy
from setpiece.gateway.context import RequestContext
from setpiece.gateway.responses import CallResult, HTTPError, HttpError, Response
from setpiece.gateway.routing import VERSION_HEADER, VersionRoutes
from setpiece.gateway.server import bind, serve, serving
from setpiece.runtime.discovery import Instance

__all__ = [
    "EVENTS_SCOPE",
    "VERSION_HEADER",
    "AuthError",
    "Breaker",
    "BreakerPolicy",
    "CallPolicy",
    "CallResult",
    "Gateway",
    "HTTPError",
    "HttpError",
    "Identity",
    "Instance",
    "JWTAuth",
    "RequestContext",
    "Response",
    "VersionRoutes",
    "bind",
    "mint_token",
    "serve",
    "serving",
]
