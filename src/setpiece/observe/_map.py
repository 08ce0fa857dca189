"""The live map at ``/_setpiece/``: the stack as a graph, its figures streamed to the page.

- ``GET /_setpiece/`` (and its script, and the vendored cytoscape.js): the page; public, as
  pages are, even with auth;
- ``GET /_setpiece/graph``: services (with their handlers and routes), buses and their rules,
  streams, workflows, HTTP targets, as nodes and edges;
- ``GET /_setpiece/events``: server-sent events, one ``stats`` message a second: per node its
  deliveries, failures, dead letters, lag, latency; per route its requests and errors; breaker
  states; SLO status (every ten seconds);
- ``POST /_setpiece/node`` (``{"id": ...}``): a node's recent deliveries, its dead letters and
  its last traces (a waterfall of spans, when tracing goes to an SDK ``TracerProvider``).

With auth, the data routes need a token with the scope ``setpiece:observe``; the page asks for
one in its URL fragment (``/_setpiece/#token=...``, never sent to the server but as a header).
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from setpiece.bus import Bus, HttpTarget, WorkflowTarget, bus_stream_name
from setpiece.runtime.extension import EndpointCall, HttpEndpoint, RawBody, StreamBody
from setpiece.stream import Stream

if TYPE_CHECKING:
    from setpiece.observe._extension import Observe
    from setpiece.observe._metrics import Metrics
    from setpiece.runtime.runtime import Runtime
    from setpiece.stack import Stack

__all__ = ["LiveMap", "endpoints", "graph"]

VENDOR = "vendor/cytoscape-3.35.0/cytoscape.min.js"
_STREAM_SECONDS = 60
_STATIC = {
    "/_setpiece/": ("map.html", "text/html; charset=utf-8"),
    "/_setpiece/map.js": ("map.js", "text/javascript; charset=utf-8"),
    f"/_setpiece/{VENDOR}": (VENDOR, "text/javascript; charset=utf-8"),
}


def graph(stack: Stack) -> dict[str, Any]:
    """The stack as nodes (``id``, ``label``, ``kind``, ``parent``) and edges."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []

    def node(id_: str, label: str, kind: str, parent: str | None = None) -> str:
        nodes.append({"id": id_, "label": label, "kind": kind, "parent": parent})
        return id_

    for bus in stack.buses.values():
        node(f"bus:{bus.name}", f"bus {bus.name}", "bus")
    for stream in stack.streams.values():
        node(f"stream:{stream.name}", f"stream {stream.name}", "stream")
    for workflow in stack.workflows.values():
        node(f"workflow:{workflow.name}", f"workflow {workflow.name}", "workflow")
    for service in stack.services.values():
        parent = node(f"service:{service.name}", f"{service.name} v{service.version}",
                      "service")
        for handler in service.handlers:
            hid = node(f"handler:{handler.qualname}", handler.name, "handler", parent)
            source = (f"bus:{handler.bus}" if handler.kind == "event" else
                      f"stream:{handler.stream}" if handler.kind == "stream" else None)
            if source is not None:
                edges.append({"id": f"sub:{handler.qualname}", "source": source,
                              "target": hid, "group": handler.qualname})
        for route in service.routes:
            node(f"route:{route.method} {route.path}", f"{route.method} {route.path}", "route",
                 parent)
    for bus in stack.buses.values():
        for rule in bus.rules:
            for index, target in enumerate(rule.targets):
                name, target_id = _target(target, index)
                if isinstance(target, HttpTarget):
                    node(target_id, f"POST {target.url}", "http")
                edges.append({"id": f"rule:{bus.name}:{rule.name}:{index}",
                              "source": f"bus:{bus.name}", "target": target_id,
                              "label": rule.name,
                              "group": f"rule.{bus.name}.{rule.name}.{name}"})
    return {"stack": stack.name, "nodes": nodes, "edges": edges}


def _target(target: Any, index: int) -> tuple[str, str]:
    """(the target's name in its consumer group, its node id)."""
    if isinstance(target, Stream):
        return f"stream:{target.name}", f"stream:{target.name}"
    if isinstance(target, Bus):
        return f"bus:{target.name}", f"bus:{target.name}"
    if isinstance(target, WorkflowTarget):
        return f"workflow:{target.name}", f"workflow:{target.name}"
    if isinstance(target, HttpTarget):
        return f"http:{index}", f"http:{target.url}"
    return f"{type(target).__name__}:{index}", f"{type(target).__name__}:{index}"


def _static(path: str) -> bytes:
    return resources.files("setpiece.observe").joinpath("static", path).read_bytes()


class LiveMap:
    """The map's routes for one runtime."""

    def __init__(self, observe: Observe, runtime: Runtime) -> None:
        self.observe = observe
        self.runtime = runtime
        self._slo: tuple[float, list[dict[str, Any]]] = (0.0, [])

    def endpoints(self) -> list[HttpEndpoint]:
        from setpiece.observe._extension import OBSERVE_SCOPE

        out = []
        for path, (file, kind) in _STATIC.items():
            body = _static(file)

            async def serve(call: EndpointCall, body: bytes = body, kind: str = kind
                            ) -> tuple[int, Any]:
                return 200, RawBody(kind, body)

            out.append(HttpEndpoint("GET", path, OBSERVE_SCOPE, serve, public=True,
                                    summary="The live map"))
        out.append(HttpEndpoint("GET", "/_setpiece/graph", OBSERVE_SCOPE, self._graph,
                                summary="The stack as a graph"))
        out.append(HttpEndpoint("GET", "/_setpiece/events", OBSERVE_SCOPE, self._events,
                                summary="The map's figures, as server-sent events"))
        out.append(HttpEndpoint("POST", "/_setpiece/node", OBSERVE_SCOPE, self._node,
                                summary="A node's recent deliveries, dead letters and traces"))
        return out

    async def _graph(self, call: EndpointCall) -> tuple[int, Any]:
        return 200, graph(self.runtime.stack)

    async def snapshot(self) -> dict[str, Any]:
        metrics: Metrics | None = self.observe.metrics
        groups: dict[str, Any] = {}
        routes: dict[str, Any] = {}
        breakers: dict[str, str] = {}
        if metrics is not None:
            await metrics.refresh()
            lag: dict[str, int] = {}
            for (group, _, _), n in metrics.lag.items():
                lag[group] = lag.get(group, 0) + n
            for group, stats in metrics.consumers.items():
                timings = stats.timings
                groups[group] = {
                    "deliveries": stats.deliveries, "failures": stats.failures,
                    "dead_letters": stats.dead_letters, "lag": lag.get(group, 0),
                    "p99": timings.quantile(0.99),
                }
            for (method, route, _, status), n in metrics.http_counts.items():
                entry = routes.setdefault(f"{method} {route}", {"requests": 0, "errors": 0})
                entry["requests"] += n
                if status >= 500:
                    entry["errors"] += n
            for (service, _), state in metrics.breakers.items():
                if breakers.get(service) != "open":
                    breakers[service] = state
        return {"time": time.time(), "groups": groups, "routes": routes,
                "breakers": breakers, "slos": await self._slos()}

    async def _slos(self) -> list[dict[str, Any]]:
        objectives = self.observe.objectives
        if objectives is None:
            return []
        at, cached = self._slo
        now = self.runtime.clock.time()
        if time.monotonic() - at > 10:
            cached = [s.to_dict() for s in await objectives.status(now)]
            self._slo = (time.monotonic(), cached)
        return cached

    async def _events(self, call: EndpointCall) -> tuple[int, Any]:
        async def chunks() -> Any:
            # A minute per stream, then the page connects again: a server that stops waits
            # for its requests, and never for long on this one.
            for _ in range(_STREAM_SECONDS):
                data = json.dumps(await self.snapshot())
                yield f"event: stats\ndata: {data}\n\n".encode()
                await asyncio.sleep(1.0)

        return 200, StreamBody("text/event-stream", chunks)

    async def _node(self, call: EndpointCall) -> tuple[int, Any]:
        try:
            node_id = json.loads(call.body or b"{}").get("id")
        except (ValueError, AttributeError):
            node_id = None
        if not isinstance(node_id, str):
            return 400, {"error": "bad_request", "detail": "send {\"id\": <a node id>}",
                         "field": "id"}
        kind, _, name = node_id.partition(":")
        groups = self._groups(kind, name)
        recent: list[dict[str, Any]] = []
        metrics = self.observe.metrics
        if metrics is not None:
            for group in groups:
                stats = metrics.consumers.get(group)
                if stats is not None:
                    recent += [{"time": t, "id": i, "type": ty, "ms": s * 1000, "failed": f,
                                "consumer": group} for t, i, ty, s, f in stats.recent]
        recent.sort(key=lambda r: r["time"], reverse=True)
        labels = {c.label for c in self.runtime.consumers if c.group in groups}
        letters = [{"id": d.id, "time": d.time, "handler": d.handler, "error": d.error,
                    "type": d.event.type if d.event else None}
                   for d in await self.runtime.dead_letters() if d.handler in labels][-20:]
        spans = self.observe.recent_spans
        names = {f"process {g}" for g in groups}
        if kind == "route":
            names.add(name)
        traces = spans.last(names) if spans is not None else []
        return 200, {"id": node_id, "recent": recent[:20], "dead_letters": letters,
                     "traces": traces}

    def _groups(self, kind: str, name: str) -> set[str]:
        """The consumer groups behind a node."""
        stack = self.runtime.stack
        if kind == "handler":
            return {name}
        if kind == "service" and name in stack.services:
            return {h.qualname for h in stack.services[name].handlers}
        if kind in ("bus", "stream", "workflow", "http"):
            stream = bus_stream_name(name) if kind == "bus" else name
            reads = kind in ("bus", "stream")
            target = f".{kind}:{name}"  # a rule target's group ends so
            return {c.group for c in self.runtime.consumers
                    if (reads and c.stream == stream)
                    or (c.group.startswith("rule.") and c.group.endswith(target))}
        return set()


def endpoints(observe: Observe, runtime: Runtime) -> list[HttpEndpoint]:
    return LiveMap(observe, runtime).endpoints()
