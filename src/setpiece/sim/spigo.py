"""Spigo architecture files (``*_arch.json``) as a :class:`~setpiece.sim.model.Model`.

The format is described in ``docs/sim.md``. In short: ``arch`` names the architecture and
``services`` lists ``{"name", "package", "count", "regions", "dependencies"}``. ``count`` is the
number of instances per region (times ``scale``); ``count: 0`` is a managed piece (DNS, ELB, a
bucket) with no instances of its own, folded into its callers; the ``denominator`` services are
the entry points (the load generator sends its requests through them); the dependency
``eureka`` is the discovery service, which the simulator always has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from setpiece.errors import ConfigError
from setpiece.sim.files import read_json
from setpiece.sim.model import REGIONS, Call, Cost, Model, ServiceSpec, break_cycles

__all__ = ["PACKAGES", "from_spigo", "load_spigo"]

# What each Spigo package does with a request: "one" routes it to one dependency, "all" calls
# every dependency; and what a request costs there (mean seconds of processing).
PACKAGES: Mapping[str, tuple[str, Cost]] = {
    "denominator": ("one", Cost(latency=0.0)),
    "elb": ("one", Cost(latency=0.0)),
    "zuul": ("one", Cost(latency=0.0005)),
    "karyon": ("all", Cost(latency=0.002)),
    "monolith": ("all", Cost(latency=0.005)),
    "staash": ("all", Cost(latency=0.001)),
    "priamCassandra": ("all", Cost(latency=0.001)),
    "riak": ("all", Cost(latency=0.001)),
    "store": ("all", Cost(latency=0.0005)),
    "cache": ("all", Cost(latency=0.0002)),
    "volume": ("all", Cost(latency=0.002)),
}
DEFAULT_PACKAGE = ("all", Cost())
DISCOVERY = "eureka"
MAX_PLANS = 256


def load_spigo(path: str | Path, *, scale: float = 1.0,
               costs: Mapping[str, Cost] | None = None) -> Model:
    """Read a Spigo architecture file; errors name the file and the field."""
    path = Path(path)
    data = read_json(path, str(path), "no such architecture file")
    try:
        return from_spigo(data, scale=scale, costs=costs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _field(entry: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = entry.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def from_spigo(data: Any, *, scale: float = 1.0,
               costs: Mapping[str, Cost] | None = None) -> Model:
    """Build the model of a decoded Spigo architecture (see :func:`load_spigo`)."""
    if not isinstance(data, dict):
        raise ConfigError("an architecture must be a JSON object")
    if not scale > 0 or math.isinf(scale):
        raise ConfigError(f"scale: must be positive, got {scale!r}")
    name = data.get("arch")
    if not isinstance(name, str) or not name:
        raise ConfigError("'arch': missing (the architecture's name)")
    entries = data.get("services")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("'services': must be a non-empty list")
    declared: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(entries):
        where = f"services[{n}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object")
        sname = _field(item, "name", str, where, "")
        if not sname:
            raise ConfigError(f"{where}: 'name' is missing")
        where = f"service {sname!r}"
        if sname in declared:
            raise ConfigError(f"{where}: declared twice")
        count = _field(item, "count", int, where, 0)
        regions = _field(item, "regions", int, where, 1)
        if count < 0 or not 0 <= regions <= len(REGIONS):
            raise ConfigError(f"{where}: count must be >= 0 and regions in 0..{len(REGIONS)}")
        deps = _field(item, "dependencies", list, where, [])
        if not all(isinstance(d, str) for d in deps):
            raise ConfigError(f"{where}: 'dependencies' must be a list of names")
        package = _field(item, "package", str, where, "")
        declared[sname] = {"count": count, "regions": regions, "package": package,
                           "deps": [d for d in deps if d != DISCOVERY]}
    for sname, info in declared.items():
        for dep in info["deps"]:
            if dep not in declared:
                raise ConfigError(f"service {sname!r}: depends on unknown service {dep!r}")
    real = {s for s, info in declared.items() if info["count"] > 0 and info["regions"] > 0}
    roots = [s for s, info in declared.items() if info["package"] == "denominator"]
    if not roots:
        called = {d for info in declared.values() for d in info["deps"]}
        roots = [s for s in declared if s not in called]
    if not roots:
        raise ConfigError("no entry point: no 'denominator' service and every service is called")

    def mode(sname: str) -> str:
        return PACKAGES.get(declared[sname]["package"], DEFAULT_PACKAGE)[0]

    def expand(caller: str | None, sname: str, stack: tuple[str, ...]) -> list[tuple[Call, ...]]:
        """The plans that reach real services when ``caller`` calls ``sname``."""
        if sname in real:
            leaf = sname == caller or sname in stack
            return [(Call(sname, leaf=leaf),)]
        if sname in stack:  # a cycle through managed pieces: nothing further
            return [()]
        return plans_of(sname, (*stack, sname), caller)

    def plans_of(sname: str, stack: tuple[str, ...], caller: str | None) -> list[tuple[Call, ...]]:
        deps = declared[sname]["deps"]
        if not deps:
            return [()]
        who = sname if sname in real else caller
        options = [expand(who, dep, stack) for dep in deps]
        if mode(sname) == "one":
            out = [plan for option in options for plan in option]
        else:
            out = [()]
            for option in options:
                out = [a + b for a in out for b in option]
                if len(out) > MAX_PLANS:
                    raise ConfigError(f"service {sname!r}: its dependencies combine into more "
                                      f"than {MAX_PLANS} call plans")
        return _unique(out)

    services = []
    for sname, info in declared.items():
        if sname not in real:
            continue
        mode_cost = PACKAGES.get(info["package"], DEFAULT_PACKAGE)[1]
        cost = (costs or {}).get(sname, mode_cost)
        plans = [p for p in plans_of(sname, (sname,), sname) if p]
        count = max(1, round(info["count"] * scale))
        services.append(ServiceSpec(
            name=sname, count=count, regions=REGIONS[:info["regions"]], package=info["package"],
            cost=cost, plans=tuple(plans)))
    entry: list[tuple[Call, ...]] = []
    for root in roots:
        entry.extend(p for p in expand(None, root, ()) if p)
    description = data.get("description", "")
    services = break_cycles(services, [c.target for plan in entry for c in plan])
    return Model(
        name=name, services=tuple(services), entry=tuple(_unique(entry)),
        description=description if isinstance(description, str) else "",
        managed=tuple(s for s in declared if s not in real),
        edges=tuple((s, d) for s, info in declared.items() for d in info["deps"]),
    )


def _unique(plans: list[tuple[Call, ...]]) -> list[tuple[Call, ...]]:
    seen: dict[tuple[Call, ...], None] = {}
    for plan in plans:
        seen.setdefault(plan, None)
    return list(seen)
