"""The routes the runtime's extensions serve through the gateway (``/metrics``,
``/_setpiece/...``, ``/workflows/tasks/...``, ``/views/...``): finding the endpoint of a request,
checking the endpoint's scope, and turning its answer into a reply.

An endpoint's path is exact or has ``{name}`` segments (one path segment each, URL-decoded);
query parameters join the path's, which win on a clash.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from setpiece.gateway.auth import ANONYMOUS
from setpiece.gateway.exchange import JSON_HEADER, Reply, Request, encode_json
from setpiece.runtime.extension import EndpointCall, HttpEndpoint, RawBody, StreamBody

if TYPE_CHECKING:
    from setpiece.gateway.auth import JWTAuth

__all__ = ["ExtensionRoutes", "serve_endpoint"]


class ExtensionRoutes:
    """The extensions' endpoints: static paths by lookup, ``{name}`` segments by pattern."""

    def __init__(self, endpoints: list[HttpEndpoint]) -> None:
        self.static: dict[tuple[str, str], HttpEndpoint] = {}
        self.dynamic: list[tuple[str, re.Pattern[str], HttpEndpoint]] = []
        for e in endpoints:
            if "{" in e.path:
                parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", e.path)
                regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)"
                                for i, p in enumerate(parts))
                self.dynamic.append((e.method, re.compile(regex), e))
            else:
                self.static[(e.method, e.path)] = e

    def match(self, method: str, path: str) -> tuple[HttpEndpoint, dict[str, str]] | None:
        found = self.static.get((method, path))
        if found is not None:
            return found, {}
        for verb, regex, endpoint in self.dynamic:
            m = regex.fullmatch(path) if verb == method else None
            if m is not None:
                return endpoint, {k: unquote(v) for k, v in m.groupdict().items()}
        return None


async def serve_endpoint(
    endpoint: HttpEndpoint,
    params: dict[str, str],
    request: Request,
    auth: JWTAuth | None,
    authorization: str | None,
) -> Reply:
    """Run ``endpoint`` for ``request`` (its path's ``params`` matched): the caller's token
    must carry the endpoint's scope unless it is public or the stack has no auth."""
    identity = ANONYMOUS
    if auth is not None and not endpoint.public:
        identity = await auth.authenticate(authorization)
        auth.authorize(identity, (endpoint.scope,))
    if request.query_string:  # query parameters, below the path's
        query = parse_qsl(request.query_string.decode("latin-1"))
        params = {**dict(query), **params}
    status, payload = await endpoint.handle(
        EndpointCall(params=params, body=request.body, tenant=identity.tenant)
    )
    if isinstance(payload, RawBody):
        return Reply(status, payload.body,
                     [(b"content-type", payload.content_type.encode("latin-1"))])
    if isinstance(payload, StreamBody):
        return Reply(status, b"", [(b"content-type", payload.content_type.encode("latin-1")),
                                   (b"cache-control", b"no-cache")], payload.chunks)
    return Reply(status, encode_json(payload), [JSON_HEADER])
