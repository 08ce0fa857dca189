"""The gateway: one ASGI app that is the HTTP edge of a stack.

For each request it

1. matches the route (a service's ``@svc.get(...)``, ``/events/{bus}``, ``/openapi.json``,
   ``/asyncapi.json``,
   ``/healthz``): 404 / 405 otherwise;
2. authenticates the bearer JWT and checks the route's scopes (401 / 403);
3. picks a live instance of the service from discovery: a version (header, weights, sticky
   hash), then an instance whose circuit breaker lets calls through — this runtime itself
   when it runs that version, else another runtime's gateway at its registered address; with
   too few closed breakers (the panic threshold), any instance of the version;
4. calls it with a timeout, retrying idempotent methods on another instance after a transport
   failure, a timeout or a 502/503/504, and records on the instance's breaker whether the call
   failed so (a handler's 500 is the handler's failure, not the instance's): steps 3 and 4 are
   :mod:`setpiece.gateway.dispatch`;
5. in-process, binds the request to the handler's parameters (422 naming the field), runs the
   handler with a context whose store is the caller's tenant's, and commits the store writes and
   published events together in one unit of work — or nothing when the handler fails (500 with
   an error id, logged with the traceback): :mod:`setpiece.gateway.local`.

Requests proxied from another gateway carry ``x-setpiece-route: local`` and are served here
without routing again (their token is checked again: no hop is trusted blindly). The routes the
runtime's extensions serve (``/metrics``, ``/_setpiece/...``, ``/workflows/tasks/...``,
``/views/...``) go to :mod:`setpiece.gateway.endpoints`; reading bodies, sending replies and the
lifespan are :mod:`setpiece.gateway.asgi`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from setpiece.errors import EventError
from setpiece.event import Event
from setpiece.gateway.asgi import ASGIScope, Receive, Send, lifespan, read_body, send_reply
from setpiece.gateway.auth import ANONYMOUS, AuthError, Identity
from setpiece.gateway.breaker import Breaker
from setpiece.gateway.dispatch import Dispatcher
from setpiece.gateway.endpoints import ExtensionRoutes, serve_endpoint
from setpiece.gateway.exchange import (
    JSON_HEADER,
    Reply,
    Request,
    encode_json,
    error_reply,
    message_reply,
)
from setpiece.gateway.handle import GatewayMethods
from setpiece.gateway.ingress import IngressError, parse_events
from setpiece.gateway.openapi import build_openapi
from setpiece.gateway.responses import CallResult, HTTPError, reason
from setpiece.http import EVENTS_SCOPE, VERSION_HEADER, CallPolicy, VersionRoutes
from setpiece.route_table import RouteEntry as _Route
from setpiece.route_table import RouteTable
from setpiece.runtime.extension import HttpEndpoint
from setpiece.runtime.instrument import RequestObservation
from setpiece.schemas.asyncapi import asyncapi_document

if TYPE_CHECKING:
    from setpiece.gateway.auth import JWTAuth
    from setpiece.runtime.runtime import Runtime
    from setpiece.stack import Stack

__all__ = ["EVENTS_SCOPE", "Gateway"]

log = logging.getLogger("setpiece.gateway")

MAX_BODY = 1024 * 1024
_DIRECT = b"x-setpiece-route"


# -- the gateway ------------------------------------------------------------------------------


def _served_version(reply: Reply) -> str | None:
    for name, value in reply.headers:
        if name == b"x-setpiece-version":
            return value.decode("latin-1")
    return None


class Gateway:
    """The HTTP edge of a stack, as an ASGI app. Get it from ``rt.asgi()`` or ``stack.asgi()``."""

    def __init__(
        self,
        stack: Stack,
        *,
        runtime: Runtime | None = None,
        starter: Any = None,
        address: str | None = None,
    ) -> None:
        self.stack = stack
        self.auth: JWTAuth | None = getattr(stack, "auth", None)
        self.routes: VersionRoutes | None = getattr(stack, "routes", None)
        self.policy: CallPolicy = getattr(stack, "calls", None) or CallPolicy()
        self.runtime = runtime
        self.address = address
        self.max_body = MAX_BODY
        self.table = RouteTable(stack)
        self._dispatcher = Dispatcher(self)
        self.breakers: dict[str, Breaker] = self._dispatcher.breakers
        self._starter = starter
        self._openapi: bytes | None = None
        self._asyncapi: bytes | None = None
        self._extension_routes: ExtensionRoutes | None = None
        self._ending: asyncio.Event | None = None  # set: streamed replies end (a shutdown)
        self._version_header = (
            self.routes.header if self.routes is not None else VERSION_HEADER
        ).encode("latin-1")
        self._realm = self.auth.realm if self.auth is not None else "setpiece"
        if self.auth is None:
            log.warning("stack %r has no auth: every route is public and has no tenant",
                        stack.name)

    def __repr__(self) -> str:
        return f"Gateway({self.stack.name!r}, runtime={'on' if self.runtime else 'off'})"

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the runtime this gateway owns (``stack.asgi()``) and advertise its address."""
        if self._starter is not None and self.runtime is None:
            runtime: Runtime = await self._starter.__aenter__()
            if isinstance(runtime, GatewayMethods):  # rt.asgi() is this gateway: one set
                runtime.use_gateway(self)  # of breakers
            self.runtime = runtime
        if self.address is not None and self.runtime is not None:
            await self.runtime.advertise(self.address)

    async def shutdown(self) -> None:
        await self.aclose()
        if self._starter is not None and self.runtime is not None:
            self.runtime = None
            await self._starter.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self._dispatcher.aclose()

    @property
    def client(self) -> Any:
        """The httpx.AsyncClient of the calls to other instances (None until the first)."""
        return self._dispatcher.client

    @client.setter
    def client(self, client: Any) -> None:
        self._dispatcher.client = client

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            reply = await self._http(scope, receive)
            await send_reply(reply, receive, send, self._streams_ending)
        elif kind == "lifespan":
            await lifespan(receive, send, self.startup, self.shutdown)

    def end_streams(self) -> None:
        """End the streamed replies in progress (server-sent events), and any started later:
        a server that stops waits for its requests to finish, and a stream would not."""
        self._streams_ending().set()

    def _streams_ending(self) -> asyncio.Event:
        """Set when the streamed replies are to end (:meth:`end_streams`)."""
        if self._ending is None:
            self._ending = asyncio.Event()
        return self._ending

    async def _http(self, scope: ASGIScope, receive: Receive) -> Reply:
        method: str = scope["method"]
        request = Request(method, scope["path"], scope.get("raw_path") or b"",
                           scope.get("query_string", b""))
        authorization: str | None = None
        traceparent: str | None = None
        version_header = self._version_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                request.content_type = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == version_header:
                request.version = value.decode("latin-1")
            elif name == _DIRECT:
                request.direct = value == b"local"
            elif name == b"x-request-id":
                request.request_id = value.decode("latin-1")[:128]
        observation: RequestObservation | None = None
        try:
            endpoint = self._extension_endpoint(method, request.path)
            if endpoint is not None:  # /metrics, /_setpiece/..., served by an extension
                request.body = await read_body(receive, self.max_body)
                return await self._endpoint(method, request, authorization)
            route, params = self.table.match(method, request.path)
            runtime = self.runtime
            if (runtime is not None and runtime.instrumentation is not None
                    and route.kind in ("service", "events")):
                observation = runtime.instrumentation.request(
                    method, route.template, route.service or None, traceparent)
            if route.kind == "service":
                request.body = await read_body(receive, self.max_body)
                request.identity = await self._identify(route, authorization)
                self._trace(request, traceparent, observation)
                reply = await self._dispatcher.dispatch(route, params, request, None)
            elif route.kind == "openapi":
                return self._openapi_reply()
            elif route.kind == "asyncapi":
                return self._asyncapi_reply()
            elif route.kind == "health":
                return self._health()
            else:
                request.body = await read_body(receive, self.max_body)
                if route.kind in ("tasks", "views"):
                    return await self._endpoint(method, request, authorization)
                request.identity = await self._identify(route, authorization)
                self._trace(request, traceparent, observation)
                reply = await self._ingest(params["bus"], request, scope["headers"])
        except AuthError as exc:
            reply = error_reply(exc.status, {"error": exc.error or reason(exc.status),
                                        "detail": exc.description}, exc.headers(self._realm))
        except HTTPError as exc:
            reply = error_reply(exc.status, exc.payload(), exc.headers)
        except Exception:
            error_id = os.urandom(8).hex()
            log.exception("%s %s failed in the gateway; error id %s", method, request.path,
                          error_id)
            reply = error_reply(500, {"error": "internal", "id": error_id,
                                 "detail": f"the gateway failed; error id {error_id}"})
        if observation is not None:
            observation.end(reply.status, _served_version(reply) or request.served_version)
        return reply

    @staticmethod
    def _trace(request: Request, traceparent: str | None,
               observation: RequestObservation | None) -> None:
        """The request's trace: the caller's, continued by the span observing it if any."""
        if observation is not None and observation.traceparent is not None:
            request.trace_from(observation.traceparent)
        else:
            request.set_trace(traceparent)

    async def _identify(self, route: _Route, authorization: str | None) -> Identity:
        auth = self.auth
        if auth is None:
            return ANONYMOUS
        if route.public:
            return await auth.authenticate(authorization) if authorization else ANONYMOUS
        identity = await auth.authenticate(authorization)
        needed = route.scopes if route.kind == "service" else (EVENTS_SCOPE,)
        auth.authorize(identity, needed)
        return identity

    # -- built-in routes --------------------------------------------------------------------

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document served at ``/openapi.json``."""
        return build_openapi(self.stack, events_scope=EVENTS_SCOPE)

    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document served at ``/asyncapi.json`` (setpiece.schemas)."""
        return asyncapi_document(self.stack)

    def _asyncapi_reply(self) -> Reply:
        if self._asyncapi is None:
            self._asyncapi = encode_json(self.asyncapi())
        return Reply(200, self._asyncapi, [JSON_HEADER])

    def _openapi_reply(self) -> Reply:
        if self._openapi is None:
            self._openapi = encode_json(self.openapi())
        return Reply(200, self._openapi, [JSON_HEADER])

    def _health(self) -> Reply:
        runtime = self.runtime
        if runtime is None:
            return message_reply(503, "the runtime is not running")
        health = runtime.health()  # 503 while a consumer is down (restarting)
        return Reply(200 if health["status"] == "ok" else 503, encode_json({
            **health, "stack": self.stack.name, "member": runtime.config.member,
            "services": {s.name: s.version for s in self.stack.services.values()
                         if runtime.wants(s.name)},
        }), [JSON_HEADER])

    async def _ingest(self, bus: str, request: Request, headers: Any) -> Reply:
        runtime = self.runtime
        if runtime is None:
            return message_reply(503, "the runtime is not running")
        if bus not in self.stack.buses:
            return message_reply(404, f"the stack has no bus {bus!r}")
        try:
            events = parse_events(request.content_type, headers, request.body)
        except IngressError as exc:
            return message_reply(exc.status, exc.message, field=exc.field)
        tenant = request.identity.tenant
        ready: list[Event] = []
        for index, event in enumerate(events):
            changes: dict[str, Any] = {}
            refused = self.foreign_tenant(event, request.identity)
            if refused is not None:
                where = "tenant" if len(events) == 1 else f"[{index}].tenant"
                return message_reply(403, refused, field=where)
            if tenant is not None and event.tenant is None:
                changes["tenant"] = tenant
            if event.traceparent is None:
                changes["traceparent"] = request.child_traceparent()
            ready.append(event.replace(**changes) if changes else event)
        try:
            stored = await runtime.publish_many(ready, bus=bus)
        except EventError as exc:
            return message_reply(400, str(exc), field=exc.field or "event")
        return Reply(202, encode_json({"ids": [e.id for e in stored]}), [JSON_HEADER])

    def foreign_tenant(self, event: Event, identity: Identity) -> str | None:
        """Why ``identity`` may not publish ``event`` (None: it may).

        With auth, an event may name no tenant or the token's: a token with no tenant publishes
        only events that name none (there is no cross-tenant grant). Without auth there is no
        token to compare with, and events keep the tenant they name.
        """
        if self.auth is None or event.tenant is None or event.tenant == identity.tenant:
            return None
        if identity.tenant is None:
            return "the token has no tenant: its events must not name one"
        return "the event names another tenant than the token"

    async def _endpoint(self, method: str, request: Request, authorization: str | None
                        ) -> Reply:
        """A route an extension of the runtime serves (``POST /workflows/tasks/success`` ...)."""
        runtime = self.runtime
        if runtime is None:
            return message_reply(503, "the runtime is not running")
        found = self._endpoints(runtime).match(method, request.path)
        if found is None:
            return message_reply(404, f"no route for {request.path}")
        endpoint, params = found
        return await serve_endpoint(endpoint, params, request, self.auth, authorization)

    def _extension_endpoint(self, method: str, path: str) -> HttpEndpoint | None:
        runtime = self.runtime
        if runtime is None or not runtime.endpoints:
            return None
        found = self._endpoints(runtime).match(method, path)
        return None if found is None else found[0]

    def _endpoints(self, runtime: Runtime) -> ExtensionRoutes:
        if self._extension_routes is None:
            self._extension_routes = ExtensionRoutes(runtime.endpoints)
        return self._extension_routes

    # -- ctx.call ---------------------------------------------------------------------------

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        identity: Identity = ANONYMOUS,
        traceparent: str | None = None,
        json: Any = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CallResult:
        """A request to ``service`` with the gateway's protections, as ``identity``."""
        verb = method.upper()
        request = Request(verb, path, path.encode(), urlencode(query or {}).encode())
        request.identity = identity
        request.set_trace(traceparent)
        for name, value in (headers or {}).items():
            if name.lower() == self._version_header.decode():
                request.version = value
        if json is not None:
            request.body = encode_json(json)
            request.content_type = "application/json"
        observation: RequestObservation | None = None
        try:
            route, params = self.table.match(verb, path)
            if route.kind != "service" or route.service != service:
                raise HTTPError(404, f"{service} has no route {verb} {path}")
            runtime = self.runtime
            if runtime is not None and runtime.instrumentation is not None:
                observation = runtime.instrumentation.request(verb, route.template, service,
                                                              traceparent)
                self._trace(request, traceparent, observation)
            if self.auth is not None and not route.public:
                self.auth.authorize(identity, route.scopes)
            reply = await self._dispatcher.dispatch(route, params, request, timeout)
        except AuthError as exc:
            reply = error_reply(exc.status, {"error": exc.error or reason(exc.status),
                                        "detail": exc.description})
        except HTTPError as exc:
            reply = error_reply(exc.status, exc.payload(), exc.headers)
        if observation is not None:
            observation.end(reply.status, _served_version(reply) or request.served_version)
        return CallResult(
            reply.status,
            {k.decode("latin-1"): v.decode("latin-1") for k, v in reply.headers},
            reply.body,
        )
