"""The route table of a stack: its services' HTTP routes beside the gateway's own, checked together.

::

    table = RouteTable(stack)             # ConfigError if two routes clash or one is reserved
    entry, params = table.match("GET", "/notes/n1")     # params == {"name": "n1"}

Two routes clash when they have the same method and the same path shape (``/notes/{name}`` and
``/notes/{id}`` do); the gateway reserves ``/openapi.json``, ``/healthz``, ``/events/…`` and
``/workflows/…``. :class:`~setpiece.Stack` checks this when it is built; the gateway
(:mod:`setpiece.gateway`) matches requests with the same table. Static paths are found by dict
lookup, templated ones by regular expression in declaration order.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from setpiece.errors import ConfigError, HTTPError
from setpiece.route_params import path_names

if TYPE_CHECKING:
    from setpiece.service import HttpRoute
    from setpiece.stack import Stack

__all__ = ["RESERVED", "RouteEntry", "RouteTable", "check_routes"]

RESERVED = ("/openapi.json", "/asyncapi.json", "/healthz", "/metrics", "/events/", "/workflows/",
            "/views/", "/_setpiece/")
"""Paths the gateway serves itself; no service route may take them."""


class RouteEntry:
    """A route ready to match: a service route or one of the gateway's own."""

    __slots__ = ("kind", "public", "route", "scopes", "service", "template")

    def __init__(self, kind: str, template: str, route: HttpRoute | None = None) -> None:
        # "service" | "events" | "tasks" | "views" | "openapi" | "asyncapi" | "health"
        self.kind = kind
        self.template = template
        self.route = route
        self.service = route.service if route is not None else ""
        self.scopes: tuple[str, ...] = route.scopes if route is not None else ()
        self.public = route.public if route is not None else kind not in (
            "events", "tasks", "views")


def _regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)
    out = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(out)


class RouteTable:
    """Static paths by dict lookup, templated ones by regular expression (declaration order)."""

    def __init__(self, stack: Stack) -> None:
        self.static: dict[tuple[str, str], RouteEntry] = {}
        self.dynamic: dict[str, list[tuple[re.Pattern[str], RouteEntry]]] = {}
        self._shapes: dict[tuple[str, str], str] = {}
        self._add("GET", "/openapi.json", RouteEntry("openapi", "/openapi.json"), "the gateway")
        self._add("GET", "/asyncapi.json", RouteEntry("asyncapi", "/asyncapi.json"),
                  "the gateway")
        self._add("GET", "/healthz", RouteEntry("health", "/healthz"), "the gateway")
        self._add("POST", "/events/{bus}", RouteEntry("events", "/events/{bus}"), "the gateway")
        self._add("POST", "/workflows/tasks/{action}",
                  RouteEntry("tasks", "/workflows/tasks/{action}"), "the gateway")
        for template in ("/views/{view}", "/views/{view}/{key}"):  # served by setpiece.views
            self._add("GET", template, RouteEntry("views", template), "the gateway")
        for service in stack.services.values():
            for route in service.routes:
                where = f"route {service.name}.{route.name}"
                if route.path in ("/openapi.json", "/asyncapi.json", "/healthz", "/metrics") or (
                    route.path.startswith(("/events/", "/workflows/", "/views/", "/_setpiece/"))
                ):
                    raise ConfigError(f"{where}: {route.path!r} is reserved by the gateway "
                                      f"({', '.join(RESERVED)})")
                entry = RouteEntry("service", route.path, route)
                self._add(route.method, route.path, entry, where)

    def _add(self, method: str, template: str, route: RouteEntry, where: str) -> None:
        shape = re.sub(r"\{[^}]*\}", "{}", template)
        other = self._shapes.get((method, shape))
        if other is not None:
            raise ConfigError(f"{where}: {method} {template} is already served by {other}")
        self._shapes[(method, shape)] = where
        if path_names(template):
            self.dynamic.setdefault(method, []).append((_regex(template), route))
        else:
            self.static[(method, template)] = route

    def match(self, method: str, path: str) -> tuple[RouteEntry, dict[str, str]]:
        """The route and path parameters; HTTPError 404 or 405 (with Allow) otherwise."""
        found = self.static.get((method, path))
        if found is not None:
            return found, {}
        for regex, route in self.dynamic.get(method, ()):
            m = regex.fullmatch(path)
            if m is not None:
                return route, m.groupdict()
        allowed = sorted(
            {m for (m, p) in self.static if p == path}
            | {m for m, pairs in self.dynamic.items() if any(r.fullmatch(path) for r, _ in pairs)}
        )
        if allowed:
            raise HTTPError(405, f"{method} is not allowed on {path}",
                            headers={"allow": ", ".join(allowed)})
        raise HTTPError(404, f"no route for {path}")


def check_routes(stack: Stack) -> None:
    """Raise ConfigError if two routes clash or one takes a path the gateway reserves."""
    RouteTable(stack)
