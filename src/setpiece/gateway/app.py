"""The gateway: one ASGI app that is the HTTP edge of a stack.

For each request it

1. matches the route (a service's ``@svc.get(...)``, ``/events/{bus}``, ``/openapi.json``,
   ``/healthz``): 404 / 405 otherwise;
2. authenticates the bearer JWT and checks the route's scopes (401 / 403);
3. picks a live instance of the service from discovery: a version (header, weights, sticky
   hash), then an instance whose circuit breaker lets calls through — this runtime itself
   when it runs that version, else another runtime's gateway at its registered address; with
   too few closed breakers (the panic threshold), any instance of the version;
4. calls it with a timeout, retrying idempotent methods on another instance after a transport
   failure, a timeout or a 502/503/504, and records on the instance's breaker whether the call
   failed so (a handler's 500 is the handler's failure, not the instance's);
5. in-process, binds the request to the handler's parameters (422 naming the field), runs the
   handler with a context whose store is the caller's tenant's, and commits the store writes and
   published events together in one unit of work — or nothing when the handler fails (500 with
   an error id, logged with the traceback).

Requests proxied from another gateway carry ``x-setpiece-route: local`` and are served here
without routing again (their token is checked again: no hop is trusted blindly).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import msgspec

from setpiece._json import DepthError
from setpiece._json import decode as decode_json
from setpiece.context import ServiceStore, StoreKeyError, store_namespace
from setpiece.errors import ConfigError, ConflictError, EventError
from setpiece.event import Event
from setpiece.gateway.auth import ANONYMOUS, AuthError, Identity
from setpiece.gateway.breaker import Breaker
from setpiece.gateway.context import RequestContext
from setpiece.gateway.ingress import IngressError, parse_events
from setpiece.gateway.openapi import build_openapi
from setpiece.gateway.registry import Instance
from setpiece.gateway.responses import CallResult, HTTPError, Response, reason
from setpiece.gateway.routing import choose_version
from setpiece.http import VERSION_HEADER, CallPolicy, VersionRoutes
from setpiece.route_params import ParamError
from setpiece.route_table import RouteEntry as _Route
from setpiece.route_table import RouteTable
from setpiece.runtime.unit import Attempt, Batch

if TYPE_CHECKING:
    from setpiece.gateway.auth import JWTAuth
    from setpiece.runtime.runtime import Runtime
    from setpiece.stack import Stack

__all__ = ["EVENTS_SCOPE", "Gateway"]

log = logging.getLogger("setpiece.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EVENTS_SCOPE = "events:publish"
TASKS_SCOPE = "workflows:tasks"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
MAX_BODY = 1024 * 1024
CONFLICT_RETRIES = 8
_DIRECT = b"x-setpiece-route"
_JSON = (b"content-type", b"application/json")
_RETRYABLE = frozenset({502, 503, 504})
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date",
                  "server", "upgrade", "te", "trailer", "proxy-authenticate"})
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:  # pydantic models
        return dump(mode="json")
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_encode = msgspec.json.Encoder(enc_hook=_enc_hook).encode


# -- requests and replies ---------------------------------------------------------------------


class _Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def _error(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
           ) -> _Reply:
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return _Reply(status, _encode(payload), [_JSON, *extra])


def _message(status: int, detail: str, **extra: Any) -> _Reply:
    return _error(status, {"error": reason(status), "detail": detail, **extra})


class _Request:
    """What the routing and the handler need of one request (outside or ``ctx.call``)."""

    __slots__ = ("body", "content_type", "direct", "identity", "method", "path", "query_string",
                 "raw_path", "request_id", "trace_flags", "trace_id", "version")

    def __init__(self, method: str, path: str, raw_path: bytes, query_string: bytes) -> None:
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query_string = query_string
        self.body = b""
        self.content_type = ""
        self.identity: Identity = ANONYMOUS
        self.trace_id = ""
        self.trace_flags = "01"
        self.request_id = ""
        self.version: str | None = None
        self.direct = False

    def set_trace(self, traceparent: str | None) -> None:
        m = _TRACEPARENT.match(traceparent) if traceparent else None
        if m is not None and m.group(1) != "0" * 32:
            self.trace_id, self.trace_flags = m.group(1), m.group(2)
        else:
            self.trace_id = os.urandom(16).hex()

    def child_traceparent(self) -> str:
        """A traceparent for the next hop: same trace, a new span."""
        return f"00-{self.trace_id}-{os.urandom(8).hex()}-{self.trace_flags}"


class _Unavailable(Exception):
    """No instance can take the call now; carries the reply to give."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


# -- the gateway ------------------------------------------------------------------------------


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
        self.client: Any = None  # an httpx.AsyncClient, made on the first remote call
        self.table = RouteTable(stack)
        self.breakers: dict[str, Breaker] = {}
        self._starter = starter
        self._live: dict[str, tuple[float, list[Instance]]] = {}
        self._rr = 0
        self._openapi: bytes | None = None
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
            runtime._gateway = self  # rt.asgi() is this gateway: one set of breakers
            self.runtime = runtime
        if self.address is not None and self.runtime is not None:
            await self.runtime.advertise(self.address)

    async def shutdown(self) -> None:
        await self.aclose()
        if self._starter is not None and self.runtime is not None:
            self.runtime = None
            await self._starter.__aexit__(None, None, None)

    async def aclose(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            reply = await self._http(scope, receive)
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": [(b"content-length", str(len(reply.body)).encode()),
                                    *reply.headers]})
            await send({"type": "http.response.body", "body": reply.body})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive) -> _Reply:
        method: str = scope["method"]
        request = _Request(method, scope["path"], scope.get("raw_path") or b"",
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
        try:
            route, params = self.table.match(method, request.path)
            if route.kind == "service":
                request.body = await self._read_body(receive)
                request.identity = await self._identify(route, authorization)
                request.set_trace(traceparent)
                return await self._dispatch(route, params, request, None)
            if route.kind == "openapi":
                return self._openapi_reply()
            if route.kind == "health":
                return self._health()
            request.body = await self._read_body(receive)
            request.identity = await self._identify(route, authorization)
            request.set_trace(traceparent)
            if route.kind == "tasks":
                return await self._answer_task(params["action"], request)
            return await self._ingest(params["bus"], request, scope["headers"])
        except AuthError as exc:
            return _error(exc.status, {"error": exc.error or reason(exc.status),
                                       "detail": exc.description}, exc.headers(self._realm))
        except HTTPError as exc:
            return _error(exc.status, exc.payload(), exc.headers)
        except Exception:
            error_id = os.urandom(8).hex()
            log.exception("%s %s failed in the gateway; error id %s", method, request.path,
                          error_id)
            return _error(500, {"error": "internal", "id": error_id,
                                "detail": f"the gateway failed; error id {error_id}"})

    async def _read_body(self, receive: Receive) -> bytes:
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > self.max_body:
                raise HTTPError(413, f"the body is over {self.max_body} bytes")
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise HTTPError(413, f"the body is over {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _identify(self, route: _Route, authorization: str | None) -> Identity:
        auth = self.auth
        if auth is None:
            return ANONYMOUS
        if route.public:
            return await auth.authenticate(authorization) if authorization else ANONYMOUS
        identity = await auth.authenticate(authorization)
        needed = {"service": route.scopes, "tasks": (TASKS_SCOPE,)}.get(route.kind, (EVENTS_SCOPE,))
        auth.authorize(identity, needed)
        return identity

    # -- built-in routes --------------------------------------------------------------------

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document served at ``/openapi.json``."""
        return build_openapi(self.stack, events_scope=EVENTS_SCOPE)

    def _openapi_reply(self) -> _Reply:
        if self._openapi is None:
            self._openapi = _encode(self.openapi())
        return _Reply(200, self._openapi, [_JSON])

    def _health(self) -> _Reply:
        runtime = self.runtime
        if runtime is None:
            return _message(503, "the runtime is not running")
        health = runtime.health()  # 503 while a consumer is down (restarting)
        return _Reply(200 if health["status"] == "ok" else 503, _encode({
            **health, "stack": self.stack.name, "member": runtime.config.member,
            "services": {s.name: s.version for s in self.stack.services.values()
                         if runtime._wanted(s.name)},
        }), [_JSON])

    async def _ingest(self, bus: str, request: _Request, headers: Any) -> _Reply:
        runtime = self.runtime
        if runtime is None:
            return _message(503, "the runtime is not running")
        if bus not in self.stack.buses:
            return _message(404, f"the stack has no bus {bus!r}")
        try:
            events = parse_events(request.content_type, headers, request.body)
        except IngressError as exc:
            return _message(exc.status, exc.message, field=exc.field)
        tenant = request.identity.tenant
        ready: list[Event] = []
        for index, event in enumerate(events):
            changes: dict[str, Any] = {}
            refused = self._foreign_tenant(event, request.identity)
            if refused is not None:
                where = "tenant" if len(events) == 1 else f"[{index}].tenant"
                return _message(403, refused, field=where)
            if tenant is not None and event.tenant is None:
                changes["tenant"] = tenant
            if event.traceparent is None:
                changes["traceparent"] = request.child_traceparent()
            ready.append(event.replace(**changes) if changes else event)
        try:
            stored = await runtime.publish_many(ready, bus=bus)
        except EventError as exc:
            return _message(400, str(exc), field=exc.field or "event")
        return _Reply(202, _encode({"ids": [e.id for e in stored]}), [_JSON])

    def _foreign_tenant(self, event: Event, identity: Identity) -> str | None:
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

    async def _answer_task(self, action: str, request: _Request) -> _Reply:
        """``POST /workflows/tasks/{success|failure|heartbeat}`` with ``{"token": ...}``: answer a
        task that waits for its token (Step Functions' SendTaskSuccess/Failure/Heartbeat)."""
        from setpiece.errors import TaskTokenError
        from setpiece.workflows import send_task_failure, send_task_heartbeat, send_task_success

        runtime = self.runtime
        if runtime is None:
            return _message(503, "the runtime is not running")
        if action not in ("success", "failure", "heartbeat"):
            return _message(404, "answer a task with success, failure or heartbeat")
        try:
            body = decode_json(request.body, "body") if request.body else None
        except DepthError as exc:
            return _message(400, str(exc), field="body")
        except msgspec.DecodeError:
            return _message(400, "the body is not JSON", field="body")
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            return _message(400, "the body must be an object with a string token",
                            field="body.token")
        token, engine = body["token"], runtime.engine
        try:
            if action == "success":
                await send_task_success(engine, token, body.get("output"))
            elif action == "failure":
                await send_task_failure(engine, token, body.get("error"), body.get("cause"))
            else:
                await send_task_heartbeat(engine, token)
        except TaskTokenError as exc:
            return _error(400, {"error": type(exc).__name__, "detail": str(exc)})
        return _Reply(200, _encode({"ok": True}), [_JSON])

    # -- routing to an instance -------------------------------------------------------------

    async def _dispatch(
        self, route: _Route, params: dict[str, str], request: _Request, timeout: float | None
    ) -> _Reply:
        runtime = self.runtime
        if runtime is None:
            return _message(503, "the runtime is not running")
        policy = self.policy
        timeout = timeout or policy.timeout
        if request.direct:  # sent here by another gateway: serve it here, do not route again
            if not runtime._wanted(route.service):
                return _message(503, f"{route.service} does not run here")
            return await self._guarded_local(route, params, request, timeout)
        attempts = 1 + (policy.retries if request.method in IDEMPOTENT else 0)
        tried: set[str] = set()
        reply: _Reply | None = None
        for number in range(attempts):
            if number:
                await asyncio.sleep(policy.retry_policy.delay(number))
            try:
                instance, panic = await self._pick(route.service, request, tried)
            except _Unavailable as exc:  # after a failed attempt, its answer says more
                return reply if reply is not None else exc.reply
            tried.add(instance.key)
            breaker = self.breakers[instance.key]
            recorded = False
            try:
                if instance.local:
                    reply = await self._guarded_local(route, params, request, timeout)
                else:
                    reply = await self._remote(instance, request, timeout)
                breaker.record(reply.status not in _RETRYABLE, panic=panic)
                recorded = True
            finally:
                if not recorded and not panic:  # cancelled: neither a success nor a failure
                    breaker.release()
            if reply.status not in _RETRYABLE:
                return reply
        assert reply is not None
        return reply

    async def _instances(self, service: str) -> list[Instance]:
        now = time.monotonic()
        cached = self._live.get(service)
        if cached is not None and now < cached[0]:
            return cached[1]
        assert self.runtime is not None
        found = [i for i in await self.runtime.instances(service)
                 if i.health == "up" and (i.local or i.address)]
        refresh = min(1.0, self.runtime.config.heartbeat_interval)
        self._live[service] = (now + refresh, found)
        return found

    async def _pick(
        self, service: str, request: _Request, tried: set[str]
    ) -> tuple[Instance, bool]:
        """An instance to call, and whether it was picked in panic (its breaker not asked)."""
        instances = await self._instances(service)
        versions = sorted({i.version for i in instances})
        version = choose_version(self.routes, service, versions, requested=request.version,
                                 subject=request.identity.subject)
        if version is None:
            which = f"{service} version {request.version}" if request.version else service
            raise _Unavailable(_message(503, f"no live instance of {which}"))
        pool = [i for i in instances if i.version == version]
        untried = [i for i in pool if i.key not in tried] or pool
        local = [i for i in untried if i.local]
        remote = [i for i in untried if not i.local]
        if len(remote) > 1:
            self._rr += 1
            shift = self._rr % len(remote)
            remote = remote[shift:] + remote[:shift]
        breakers = self.breakers
        for instance in pool:
            if instance.key not in breakers:
                breakers[instance.key] = Breaker(self.policy.breaker)
        for instance in local + remote:
            if breakers[instance.key].allow():
                return instance, False
        closed = sum(breakers[i.key].closed for i in pool)
        if closed < self.policy.breaker.panic_threshold * len(pool):
            # panic: too few instances left to take the load; ejecting more would only turn
            # every call away, so each instance takes calls, ejected or not
            return (local + remote)[0], True
        wait = min(breakers[i.key].retry_after() for i in untried)
        raise _Unavailable(_error(
            503, {"error": "unavailable",
                  "detail": f"the circuit breaker of every {service} v{version} instance is open"},
            {"retry-after": str(max(1, round(wait))), "x-setpiece-breaker": "open"},
        ))

    async def _remote(self, instance: Instance, request: _Request, timeout: float) -> _Reply:
        client = self._client()
        import httpx

        url = f"{instance.address}{request.raw_path.decode('latin-1') or request.path}"
        if request.query_string:
            url = f"{url}?{request.query_string.decode('latin-1')}"
        headers = {"x-setpiece-route": "local", "traceparent": request.child_traceparent()}
        token = request.identity.token
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if request.content_type:
            headers["content-type"] = request.content_type
        if request.request_id:
            headers["x-request-id"] = request.request_id
        try:
            response = await client.request(request.method, url, content=request.body,
                                            headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return _message(504, f"{instance.service} at {instance.address} timed out",
                            instance=instance.member)
        except httpx.TransportError as exc:
            return _message(502, f"{instance.service} at {instance.address} is unreachable "
                                 f"({type(exc).__name__})", instance=instance.member)
        out = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in response.headers.items() if k not in _HOP]
        return _Reply(response.status_code, response.content, out)

    def _client(self) -> Any:
        if self.client is None:
            try:
                import httpx
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise ConfigError("the gateway needs httpx: pip install 'setpiece[http]'") from None
            self.client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=128)
            )
        return self.client

    # -- running a handler here -------------------------------------------------------------

    async def _guarded_local(
        self, route: _Route, params: dict[str, str], request: _Request, timeout: float
    ) -> _Reply:
        try:
            return await self._local(route, params, request, timeout)
        except TimeoutError:
            return _message(504, f"{route.service}.{route.route.name if route.route else ''} "
                                 f"did not answer within {timeout}s")

    async def _local(
        self, route: _Route, params: dict[str, str], request: _Request, timeout: float
    ) -> _Reply:
        runtime = self.runtime
        http_route = route.route
        assert runtime is not None and http_route is not None
        sig = http_route.signature
        service = route.service
        try:
            query = (parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)
                     if sig.query and request.query_string else {})
            kwargs = sig.bind(params, query, request.body, None)
        except ParamError as exc:
            return _message(exc.status, exc.message, field=exc.field)
        identity = request.identity
        tenant = identity.tenant
        request_id = request.request_id or os.urandom(16).hex()
        cause = Event(type="setpiece.request", source=f"setpiece/{self.stack.name}/gateway",
                      id=request_id, subject=f"{request.method} {request.path}",
                      traceparent=request.child_traceparent(), tenant=tenant,
                      correlationid=request_id)
        namespace = store_namespace(service, tenant)
        emit = runtime._emit
        for number in range(1, CONFLICT_RETRIES + 1):
            batch = Batch(runtime.engine)
            attempt = Attempt(batch)

            def publish(out: Event, bus: str | None, stream: str | None,
                        attempt: Attempt = attempt) -> None:
                refused = self._foreign_tenant(out, identity) if isinstance(out, Event) else None
                if refused is not None:  # the request acts for its token's tenant only
                    raise HTTPError(403, refused, field="tenant")
                emit(attempt, out, bus, stream, cause=cause, service=service)

            ctx = RequestContext(service=service, handler=http_route.name, event=cause,
                                 attempt=number, store=ServiceStore(attempt, namespace),
                                 publish=publish, identity=identity, gateway=self)
            try:
                async with asyncio.timeout(timeout):
                    result = await self._invoke(sig, kwargs, ctx)
            except HTTPError as exc:
                return _error(exc.status, exc.payload(), exc.headers)
            except TimeoutError:
                raise
            except StoreKeyError as exc:  # a key taken from the request that no engine can hold
                return _message(400, str(exc))
            except Exception:
                error_id = os.urandom(8).hex()
                log.exception("%s %s (%s.%s) failed; error id %s", request.method,
                              request.path, service, http_route.name, error_id)
                return _error(500, {"error": "internal", "id": error_id,
                                    "detail": f"the handler failed; error id {error_id}"})
            try:
                reply = self._encode_result(result, service)
            except TypeError as exc:
                error_id = os.urandom(8).hex()
                log.error("%s.%s returned what JSON cannot hold (%s); error id %s", service,
                          http_route.name, exc, error_id)
                return _error(500, {"error": "internal", "id": error_id,
                                    "detail": f"the handler's answer is not JSON; error id "
                                              f"{error_id}"})
            if attempt.writes or attempt.appends:
                attempt.merge(None)
                try:
                    await runtime.engine.commit(batch.unit())
                except ConflictError:
                    continue  # another request changed what this one read: run it again
            return reply
        return _error(503, {"error": "unavailable",
                            "detail": "too much contention on the same keys; try again"},
                      {"retry-after": "1"})

    @staticmethod
    async def _invoke(sig: Any, kwargs: dict[str, Any], ctx: RequestContext) -> Any:
        if sig.ctx is not None:
            kwargs = {**kwargs, sig.ctx: ctx}
        if sig.is_async:
            return await sig.fn(**kwargs)
        if sig.ctx is not None:
            kwargs[sig.ctx] = ctx.sync()
        return await asyncio.to_thread(sig.fn, **kwargs)

    def _encode_result(self, result: Any, service: str) -> _Reply:
        assert self.runtime is not None
        headers = [_JSON, (b"x-setpiece-instance", self.runtime.config.member.encode()),
                   (b"x-setpiece-version", self.stack.services[service].version.encode())]
        if isinstance(result, Response):
            extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                     for k, v in result.headers.items()]
            return _Reply(result.status, _encode(result.body), headers + extra)
        return _Reply(200, _encode(result), headers)

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
        request = _Request(verb, path, path.encode(), urlencode(query or {}).encode())
        request.identity = identity
        request.set_trace(traceparent)
        for name, value in (headers or {}).items():
            if name.lower() == self._version_header.decode():
                request.version = value
        if json is not None:
            request.body = _encode(json)
            request.content_type = "application/json"
        try:
            route, params = self.table.match(verb, path)
            if route.kind != "service" or route.service != service:
                raise HTTPError(404, f"{service} has no route {verb} {path}")
            if self.auth is not None and not route.public:
                self.auth.authorize(identity, route.scopes)
            reply = await self._dispatch(route, params, request, timeout)
        except AuthError as exc:
            reply = _error(exc.status, {"error": exc.error or reason(exc.status),
                                        "detail": exc.description})
        except HTTPError as exc:
            reply = _error(exc.status, exc.payload(), exc.headers)
        return CallResult(
            reply.status,
            {k.decode("latin-1"): v.decode("latin-1") for k, v in reply.headers},
            reply.body,
        )
