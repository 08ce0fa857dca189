"""Routing a service's request to a live instance of it, and calling that instance.

1. the instances: discovery's live ones (``up``, here or at a registered address), looked up
   again at most once a second (or once a heartbeat, when that is shorter);
2. the one to call: a version (header, weights, sticky hash: :mod:`setpiece.gateway.routing`),
   then an instance of it whose circuit breaker lets calls through — this runtime itself first,
   the others in turn; with too few closed breakers (the panic threshold), any instance of the
   version;
3. the call, with a timeout: here (:func:`~setpiece.gateway.local.run_local`) or proxied to
   the instance's gateway (``x-setpiece-route: local``); idempotent methods are retried on
   another instance after a transport failure, a timeout or a 502/503/504, and the instance's
   breaker records whether the call failed so (a handler's 500 is the handler's failure, not
   the instance's).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from setpiece.errors import ConfigError
from setpiece.gateway.breaker import Breaker
from setpiece.gateway.exchange import Reply, Request, Unavailable, error_reply, message_reply
from setpiece.gateway.local import run_local
from setpiece.gateway.routing import choose_version
from setpiece.route_table import RouteEntry
from setpiece.runtime.discovery import Instance

if TYPE_CHECKING:
    from setpiece.gateway.app import Gateway

__all__ = ["IDEMPOTENT", "Dispatcher"]

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_RETRYABLE = frozenset({502, 503, 504})
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date",
                  "server", "upgrade", "te", "trailer", "proxy-authenticate"})


class Dispatcher:
    """A gateway's calls to the instances of its services: their breakers (one per instance),
    the live instances it last saw, and the HTTP client it proxies with."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.breakers: dict[str, Breaker] = {}
        self.client: Any = None  # an httpx.AsyncClient, made on the first remote call
        self._live: dict[str, tuple[float, list[Instance]]] = {}
        self._rr = 0

    async def aclose(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def dispatch(
        self, route: RouteEntry, params: dict[str, str], request: Request, timeout: float | None
    ) -> Reply:
        """The reply of an instance of ``route``'s service to ``request``."""
        gw = self.gateway
        runtime = gw.runtime
        if runtime is None:
            return message_reply(503, "the runtime is not running")
        policy = gw.policy
        timeout = timeout or policy.timeout
        if request.direct:  # sent here by another gateway: serve it here, do not route again
            if not runtime.wants(route.service):
                return message_reply(503, f"{route.service} does not run here")
            return await run_local(gw, route, params, request, timeout)
        attempts = 1 + (policy.retries if request.method in IDEMPOTENT else 0)
        tried: set[str] = set()
        reply: Reply | None = None
        for number in range(attempts):
            if number:
                await asyncio.sleep(policy.retry_policy.delay(number))
            try:
                instance, panic = await self._pick(route.service, request, tried)
            except Unavailable as exc:  # after a failed attempt, its answer says more
                return reply if reply is not None else exc.reply
            tried.add(instance.key)
            breaker = self.breakers[instance.key]
            recorded = False
            try:
                if instance.local:
                    reply = await run_local(gw, route, params, request, timeout)
                else:
                    reply = await self._remote(instance, request, timeout)
                breaker.record(reply.status not in _RETRYABLE, panic=panic)
                recorded = True
                if runtime.instrumentation is not None:
                    runtime.instrumentation.breaker(route.service, instance.key, breaker.state)
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
        runtime = self.gateway.runtime
        assert runtime is not None
        found = [i for i in await runtime.instances(service)
                 if i.health == "up" and (i.local or i.address)]
        refresh = min(1.0, runtime.config.heartbeat_interval)
        self._live[service] = (now + refresh, found)
        return found

    async def _pick(
        self, service: str, request: Request, tried: set[str]
    ) -> tuple[Instance, bool]:
        """An instance to call, and whether it was picked in panic (its breaker not asked)."""
        policy = self.gateway.policy
        instances = await self._instances(service)
        versions = sorted({i.version for i in instances})
        version = choose_version(self.gateway.routes, service, versions,
                                 requested=request.version, subject=request.identity.subject)
        if version is None:
            which = f"{service} version {request.version}" if request.version else service
            raise Unavailable(message_reply(503, f"no live instance of {which}"))
        request.served_version = version
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
                breakers[instance.key] = Breaker(policy.breaker)
        for instance in local + remote:
            if breakers[instance.key].allow():
                return instance, False
        closed = sum(breakers[i.key].closed for i in pool)
        if closed < policy.breaker.panic_threshold * len(pool):
            # panic: too few instances left to take the load; ejecting more would only turn
            # every call away, so each instance takes calls, ejected or not
            return (local + remote)[0], True
        wait = min(breakers[i.key].retry_after() for i in untried)
        raise Unavailable(error_reply(
            503, {"error": "unavailable",
                  "detail": f"the circuit breaker of every {service} v{version} instance is open"},
            {"retry-after": str(max(1, round(wait))), "x-setpiece-breaker": "open"},
        ))

    async def _remote(self, instance: Instance, request: Request, timeout: float) -> Reply:
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
            return message_reply(504, f"{instance.service} at {instance.address} timed out",
                                 instance=instance.member)
        except httpx.TransportError as exc:
            return message_reply(502, f"{instance.service} at {instance.address} is unreachable "
                                 f"({type(exc).__name__})", instance=instance.member)
        out = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in response.headers.items() if k not in _HOP]
        return Reply(response.status_code, response.content, out)

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
