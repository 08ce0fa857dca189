"""A setpiece ``Stack`` as a :class:`~setpiece.sim.model.Model`, with a cost model.

Each handler and HTTP route of a service is a node named ``service.name``, with the service's
instances. Where a request goes is decided by the stack itself: an event that a node emits is
matched by the real patterns (:mod:`setpiece.patterns`) of the bus's rules and event handlers;
a rule that targets a stream reaches every consumer group of that stream (its handlers), each
event landing on the instance that owns its partition; ``calls`` are ``ctx.call`` dependencies
(synchronous), with the stack's ``calls`` (:class:`~setpiece.CallPolicy`) when it has one;
an event delivery is retried by its handler's (or rule's) :class:`~setpiece.RetryPolicy`.
The cost model (a JSON file or a dict) says what the code cannot::

    {"defaults": {"instances": 3, "latency_ms": 2, "error_rate": 0, "workers": 1,
                  "max_inflight": 100, "distribution": "exponential"},
     "services": {"orders": {"instances": 6, "regions": 2}},
     "nodes": {"orders.place": {"latency_ms": 5, "calls": ["billing.charge"],
                                "emits": [{"source": "shop", "type": "OrderPlaced"}]}},
     "entry": ["orders.place", {"event": {"source": "shop", "type": "Tick"}, "bus": "default"}]}

``entry`` lists where outside traffic arrives (nodes, or events put on a bus); by default every
HTTP route. Unknown services, nodes and dependencies are errors that name them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpiece import patterns
from setpiece.bus import Bus
from setpiece.errors import ConfigError, EventError, PatternError
from setpiece.event import Event
from setpiece.policy import RetryPolicy
from setpiece.sim.files import read_json
from setpiece.sim.model import REGIONS, Call, Cost, Model, ServiceSpec, break_cycles
from setpiece.stream import Stream

if TYPE_CHECKING:
    from setpiece.stack import Stack

__all__ = ["from_stack", "load_costs", "parse_cost"]

COST_KEYS = {"latency_ms", "distribution", "error_rate", "workers", "max_inflight"}
NODE_KEYS = COST_KEYS | {"calls", "emits", "bus"}
SERVICE_KEYS = COST_KEYS | {"instances", "regions"}
# an event delivery's retries when neither its handler nor its rule says (RetryPolicy's default)
DELIVERY_RETRY = RetryPolicy()


def load_costs(path: str | Path) -> dict[str, Any]:
    """Read a cost model file (JSON)."""
    path = Path(path)
    data = read_json(path, f"cost model {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"cost model {path}: must be a JSON object")
    return data


def parse_cost(entry: Mapping[str, Any], where: str, base: Cost | None = None) -> Cost:
    """A :class:`Cost` from ``latency_ms``, ``distribution``, ``error_rate``, ``workers`` and
    ``max_inflight`` (the others keep ``base``'s values)."""
    base = base or Cost()
    fields: dict[str, Any] = {}
    for key in COST_KEYS & set(entry):
        value = entry[key]
        if key == "distribution":
            fields[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}.{key}: must be a number, got {value!r}")
        if key == "latency_ms":
            fields["latency"] = value / 1000
        elif key in ("workers", "max_inflight"):
            if not isinstance(value, int):
                raise ConfigError(f"{where}.{key}: must be an integer, got {value!r}")
            fields[key] = value
        else:
            fields[key] = value
    try:
        return Cost(**{**_fields(base), **fields})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _fields(cost: Cost) -> dict[str, Any]:
    return {"latency": cost.latency, "distribution": cost.distribution,
            "error_rate": cost.error_rate, "workers": cost.workers,
            "max_inflight": cost.max_inflight}


def _section(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"cost model: {key!r} must be an object")
    return value


def _check_keys(entry: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    return entry


class _Router:
    """Where an event put on a bus goes, by the stack's own rules and patterns."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.event_handlers = [h for svc in stack.services.values() for h in svc.handlers
                               if h.kind == "event"]
        self.stream_handlers = [h for svc in stack.services.values() for h in svc.handlers
                                if h.kind == "stream"]
        self._compiled: dict[int, patterns.Pattern] = {}

    def _pattern(self, handler: Any) -> patterns.Pattern:
        if handler.compiled is not None:
            return handler.compiled  # type: ignore[no-any-return]
        key = id(handler)
        if key not in self._compiled:
            pattern = handler.pattern
            self._compiled[key] = patterns.compile(
                pattern if isinstance(pattern, str) else dict(pattern or {}))
        return self._compiled[key]

    def route(self, event: Mapping[str, Any], bus: str, where: str,
              depth: int = 0) -> list[Call]:
        if bus not in self.stack.buses:
            raise ConfigError(f"{where}: unknown bus {bus!r} (buses: {sorted(self.stack.buses)})")
        try:
            view = Event.from_dict(dict(event)).pattern_view()
        except (EventError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not a valid event ({exc})") from None
        calls = []
        for handler in self.event_handlers:
            if handler.bus == bus and self._pattern(handler).matches(view):
                calls.append(Call(handler.qualname, kind="async", label=f"bus {bus}",
                                  retry=handler.retry or DELIVERY_RETRY))
        for rule in self.stack.buses[bus].rules:
            if not rule.compiled.matches(view):
                continue
            for target in rule.targets:
                if isinstance(target, Stream):
                    for handler in self.stream_handlers:
                        if handler.stream == target.name:
                            calls.append(Call(handler.qualname, kind="stream",
                                              partitions=target.partitions,
                                              label=f"stream {target.name}",
                                              retry=handler.retry or rule.retry
                                              or DELIVERY_RETRY))
                elif isinstance(target, Bus) and depth < 8:
                    calls.extend(self.route(event, target.name, where, depth + 1))
        return calls


def from_stack(stack: Stack, costs: Mapping[str, Any] | None = None) -> Model:
    """The model of ``stack`` under the cost model ``costs`` (see the module docstring)."""
    costs = dict(costs or {})
    unknown = set(costs) - {"defaults", "services", "nodes", "entry"}
    if unknown:
        raise ConfigError(f"cost model: unknown key(s) {sorted(unknown)}")
    defaults = _check_keys(_section(costs, "defaults"), SERVICE_KEYS, "cost model defaults")
    base = parse_cost(defaults, "cost model defaults")
    per_service = _section(costs, "services")
    per_node = _section(costs, "nodes")
    nodes: dict[str, tuple[str, Any]] = {}  # node -> (service, handler or route)
    for svc in stack.services.values():
        for handler in svc.handlers:
            nodes[handler.qualname] = (svc.name, handler)
        for route in svc.routes:
            nodes[f"{svc.name}.{route.name}"] = (svc.name, route)
    for name in per_service:
        if name not in stack.services:
            raise ConfigError(f"cost model services: unknown service {name!r} "
                              f"(services: {sorted(stack.services)})")
    for name in per_node:
        if name not in nodes:
            raise ConfigError(f"cost model nodes: unknown node {name!r} (nodes are "
                              f"service.handler or service.route: {sorted(nodes)})")
    router = _Router(stack)
    services = []
    for node, (svc_name, _item) in nodes.items():
        svc_cfg = _check_keys(per_service.get(svc_name, {}), SERVICE_KEYS,
                              f"cost model services.{svc_name}")
        node_cfg = _check_keys(per_node.get(node, {}), NODE_KEYS, f"cost model nodes.{node}")
        cost = parse_cost(node_cfg, f"cost model nodes.{node}",
                          parse_cost(svc_cfg, f"cost model services.{svc_name}", base))
        count = svc_cfg.get("instances", defaults.get("instances", 3))
        regions = svc_cfg.get("regions", defaults.get("regions", 1))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"cost model services.{svc_name}.instances: must be an integer "
                              f">= 1, got {count!r}")
        if isinstance(regions, bool) or not isinstance(regions, int) \
                or not 1 <= regions <= len(REGIONS):
            raise ConfigError(f"cost model services.{svc_name}.regions: must be 1..{len(REGIONS)}")
        plan: list[Call] = []
        calls = node_cfg.get("calls", [])
        if not isinstance(calls, list):
            raise ConfigError(f"cost model nodes.{node}.calls: must be a list of nodes")
        for target in calls:
            if target not in nodes:
                raise ConfigError(f"cost model nodes.{node}.calls: unknown dependency "
                                  f"{target!r} (nodes: {sorted(nodes)})")
            plan.append(Call(target, label="ctx.call"))
        emits = node_cfg.get("emits", [])
        if not isinstance(emits, list):
            raise ConfigError(f"cost model nodes.{node}.emits: must be a list of events")
        bus = node_cfg.get("bus", stack.default_bus)
        for n, event in enumerate(emits):
            if not isinstance(event, dict):
                raise ConfigError(f"cost model nodes.{node}.emits[{n}]: must be an event object")
            plan.extend(router.route(event, bus, f"cost model nodes.{node}.emits[{n}]"))
        services.append(ServiceSpec(
            name=node, count=count, regions=REGIONS[:regions], package=svc_name, cost=cost,
            plans=(tuple(plan),) if plan else (),
            version=getattr(stack.services[svc_name], "version", "1")))
    entry = _entry(costs.get("entry"), stack, nodes, router)
    try:
        services = break_cycles(services, [c.target for plan in entry for c in plan])
    except PatternError as exc:  # pragma: no cover - patterns are compiled already
        raise ConfigError(str(exc)) from None
    return Model(name=stack.name, services=tuple(services), entry=tuple(entry),
                 description=f"setpiece stack {stack.name}", calls=stack.calls,
                 edges=tuple((s.name, c.target) for s in services for p in s.plans for c in p))


def _entry(spec: Any, stack: Stack, nodes: Mapping[str, Any],
           router: _Router) -> list[tuple[Call, ...]]:
    if spec is None:
        routes = [n for n, (_, item) in nodes.items() if not hasattr(item, "kind")]
        if not routes:
            raise ConfigError("cost model: the stack has no HTTP route; say where traffic "
                              "arrives with 'entry' (nodes or events)")
        return [(Call(n),) for n in routes]
    if not isinstance(spec, list) or not spec:
        raise ConfigError("cost model entry: must be a non-empty list")
    out: list[tuple[Call, ...]] = []
    for n, item in enumerate(spec):
        where = f"cost model entry[{n}]"
        if isinstance(item, str):
            if item not in nodes:
                raise ConfigError(f"{where}: unknown node {item!r} (nodes: {sorted(nodes)})")
            out.append((Call(item),))
        elif isinstance(item, dict) and "event" in item:
            _check_keys(item, {"event", "bus"}, where)
            calls = router.route(item["event"], item.get("bus", stack.default_bus), where)
            if not calls:
                raise ConfigError(f"{where}: no rule or handler of the stack matches this event")
            out.append(tuple(calls))
        else:
            raise ConfigError(f"{where}: must be a node name or {{'event': {{...}}}}")
    return out
