"""Serving a route here: one request as one unit of work.

The route's handler runs in a :class:`~setpiece.runtime.scope.Scope` — the service's store for
the caller's tenant, the events it publishes (refused with a 403 when they name another tenant
than the caller's token) — and what it did commits with compare-and-set; a lost race runs the
request again, up to ``CONFLICT_RETRIES`` times.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from setpiece.context import StoreKeyError
from setpiece.errors import ConflictError
from setpiece.event import Event
from setpiece.gateway.context import RequestContext
from setpiece.gateway.exchange import (
    JSON_HEADER,
    Reply,
    Request,
    encode_json,
    error_reply,
    message_reply,
)
from setpiece.gateway.responses import HTTPError, Response
from setpiece.route_params import ParamError
from setpiece.route_table import RouteEntry
from setpiece.runtime.scope import Scope, call_handler
from setpiece.runtime.unit import Attempt, Batch

if TYPE_CHECKING:
    from setpiece.gateway.app import Gateway

__all__ = ["CONFLICT_RETRIES", "run_local"]

log = logging.getLogger("setpiece.gateway")

CONFLICT_RETRIES = 8


async def run_local(
    gw: Gateway, route: RouteEntry, params: dict[str, str], request: Request, timeout: float
) -> Reply:
    try:
        return await _local(gw, route, params, request, timeout)
    except TimeoutError:
        return message_reply(504, f"{route.service}.{route.route.name if route.route else ''} "
                             f"did not answer within {timeout}s")

async def _local(
    gw: Gateway, route: RouteEntry, params: dict[str, str], request: Request, timeout: float
) -> Reply:
    runtime = gw.runtime
    http_route = route.route
    assert runtime is not None and http_route is not None
    sig = http_route.signature
    service = route.service
    try:
        query = (parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)
                 if sig.query and request.query_string else {})
        kwargs = sig.bind(params, query, request.body, None)
    except ParamError as exc:
        return message_reply(exc.status, exc.message, field=exc.field)
    identity = request.identity
    tenant = identity.tenant
    request_id = request.request_id or os.urandom(16).hex()
    cause = Event(type="setpiece.request", source=f"setpiece/{gw.stack.name}/gateway",
                  id=request_id, subject=f"{request.method} {request.path}",
                  traceparent=request.child_traceparent(), tenant=tenant,
                  correlationid=request_id)
    emit = runtime.emit

    def checked(attempt: Attempt, event: Event, bus: str | None, stream: str | None, *,
                cause: Event, service: str) -> None:
        refused = gw.foreign_tenant(event, identity) if isinstance(event, Event) else None
        if refused is not None:  # the request acts for its token's tenant only
            raise HTTPError(403, refused, field="tenant")
        emit(attempt, event, bus, stream, cause=cause, service=service)

    for number in range(1, CONFLICT_RETRIES + 1):
        batch = Batch(runtime.engine)
        attempt = Attempt(batch)
        scope = Scope(attempt, service=service, cause=cause, number=number, emit=checked,
                      services=runtime.context_services)
        ctx = RequestContext(scope, http_route.name, identity=identity, gateway=gw)
        try:
            async with asyncio.timeout(timeout):
                result = await _invoke(sig, kwargs, ctx)
        except HTTPError as exc:
            return error_reply(exc.status, exc.payload(), exc.headers)
        except TimeoutError:
            raise
        except StoreKeyError as exc:  # a key taken from the request that no engine can hold
            return message_reply(400, str(exc))
        except Exception:
            error_id = os.urandom(8).hex()
            log.exception("%s %s (%s.%s) failed; error id %s", request.method,
                          request.path, service, http_route.name, error_id)
            return error_reply(500, {"error": "internal", "id": error_id,
                                "detail": f"the handler failed; error id {error_id}"})
        try:
            reply = _encode_result(gw, result, service)
        except TypeError as exc:
            error_id = os.urandom(8).hex()
            log.error("%s.%s returned what JSON cannot hold (%s); error id %s", service,
                      http_route.name, exc, error_id)
            return error_reply(500, {"error": "internal", "id": error_id,
                                "detail": f"the handler's answer is not JSON; error id "
                                          f"{error_id}"})
        if attempt.writes or attempt.appends:
            attempt.merge(None)
            try:
                await runtime.engine.commit(batch.unit())
            except ConflictError:
                continue  # another request changed what this one read: run it again
        return reply
    return error_reply(503, {"error": "unavailable",
                        "detail": "too much contention on the same keys; try again"},
                  {"retry-after": "1"})

async def _invoke(sig: Any, kwargs: dict[str, Any], ctx: RequestContext) -> Any:
    if sig.ctx is not None:
        kwargs = {**kwargs, sig.ctx: ctx}
    return await call_handler(sig.fn, sig.is_async, **kwargs)

def _encode_result(gw: Gateway, result: Any, service: str) -> Reply:
    assert gw.runtime is not None
    headers = [JSON_HEADER, (b"x-setpiece-instance", gw.runtime.config.member.encode()),
               (b"x-setpiece-version", gw.stack.services[service].version.encode())]
    if isinstance(result, Response):
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                 for k, v in result.headers.items()]
        return Reply(result.status, encode_json(result.body), headers + extra)
    return Reply(200, encode_json(result), headers)
