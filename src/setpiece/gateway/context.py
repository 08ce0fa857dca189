"""The context of an HTTP request: an event handler's context, plus who is calling and ``call``.

``ctx.store`` is the service's store for the caller's tenant, ``ctx.publish`` emits events that
commit with the request's store writes (one unit of work), and ``ctx.event`` is the request seen
as an event (its id is the request id; its trace and tenant are the request's), so published
events carry the request's trace, tenant and correlation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from setpiece.context import Context
from setpiece.gateway.auth import Identity

if TYPE_CHECKING:
    from setpiece.gateway.app import Gateway
    from setpiece.gateway.responses import CallResult
    from setpiece.runtime.scope import Scope

__all__ = ["RequestContext"]


class RequestContext(Context):
    """What a route handler gets as ``ctx``."""

    __slots__ = ("_gateway", "identity", "tenant", "traceparent")

    def __init__(self, scope: Scope, handler: str, *, identity: Identity, gateway: Gateway) -> None:
        super().__init__(scope, handler)
        self.identity = identity
        self.tenant = identity.tenant
        self.traceparent = scope.cause.traceparent
        self._gateway = gateway

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CallResult:
        """Call a route of another service through the gateway's protections.

        Version routing, breakers, timeouts and retries apply as for outside requests; the
        caller's identity (its token) and trace go along. Returns a
        :class:`~setpiece.gateway.CallResult` (``.status``, ``.json()``, ``.raise_for_status()``).
        """
        return await self._gateway.call(
            service, method, path, identity=self.identity, traceparent=self.traceparent,
            json=json, query=query, headers=headers, timeout=timeout,
        )
