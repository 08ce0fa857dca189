"""What a deployment is made of: the engine resources a stack needs (:class:`Resources`), and
the stack's definition (:func:`describe`), a canonical JSON description of every declared thing.

The resources are what ``setpiece apply`` creates and ``setpiece rollback`` re-creates: streams
(partitions, retention) and consumer groups (where a new one starts). The definition is what a
deployment records beside them, so ``setpiece history`` can say what ran: services with their
versions and handlers, buses with their rules, streams, workflows (with their ASL), the HTTP
routes and the version routing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from setpiece.bus import Bus, HttpTarget, Target, WorkflowTarget
from setpiece.engine.contract import StreamSpec
from setpiece.errors import ConfigError
from setpiece.stack import Stack
from setpiece.stream import Stream

__all__ = ["FORMAT", "GroupSpec", "Resources", "canonical", "describe", "digest"]

#: The version of the definition's JSON layout (``"format"`` in every definition).
FORMAT = 1


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A consumer group on a stream; a new one starts at the end of the stream or at its start."""

    group: str
    stream: str
    start_at_end: bool

    @property
    def name(self) -> str:
        return f"{self.group}@{self.stream}"


@dataclass(frozen=True, slots=True)
class Resources:
    """The engine resources of a deployment, each in a stable order (by name)."""

    streams: tuple[StreamSpec, ...]
    groups: tuple[GroupSpec, ...]

    @classmethod
    def of(cls, streams: list[StreamSpec], groups: list[GroupSpec]) -> Resources:
        by_name: dict[str, StreamSpec] = {}
        for spec in streams:
            if by_name.get(spec.name, spec) != spec:
                raise ConfigError(f"stream {spec.name!r} is declared twice, differently")
            by_name[spec.name] = spec
        unique = {(g.group, g.stream): g for g in groups}
        return cls(tuple(by_name[n] for n in sorted(by_name)),
                   tuple(unique[k] for k in sorted(unique)))

    def as_json(self) -> dict[str, Any]:
        return {
            "streams": [{"name": s.name, "partitions": s.partitions, "retention": s.retention}
                        for s in self.streams],
            "groups": [{"group": g.group, "stream": g.stream,
                        "start": "end" if g.start_at_end else "beginning"} for g in self.groups],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resources:
        try:
            streams = [StreamSpec(s["name"], int(s["partitions"]),
                                  None if s["retention"] is None else float(s["retention"]))
                       for s in data["streams"]]
            groups = [GroupSpec(g["group"], g["stream"], g["start"] == "end")
                      for g in data["groups"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a recorded deployment's resources are malformed: {exc!r}") from None
        return cls.of(streams, groups)


def canonical(data: Any) -> bytes:
    """The canonical JSON bytes of ``data``: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def _json(value: Any) -> Any:
    """A pattern or transformer as plain JSON (mappings and sequences copied)."""
    return json.loads(canonical(value))


def _target(target: Target) -> dict[str, Any]:
    if isinstance(target, Stream):
        return {"stream": target.name}
    if isinstance(target, Bus):
        return {"bus": target.name}
    if isinstance(target, HttpTarget):
        return {"http": target.url, "timeout": target.timeout}
    if isinstance(target, WorkflowTarget):
        return {"workflow": target.name}
    return {"workflow": target.name}  # a Workflow given directly stands for its WorkflowTarget


def _transform(transform: Any) -> Any:
    if transform is None:
        return None
    return {"paths": _json(transform.paths), "template": transform.template}


def describe(stack: Stack, resources: Resources) -> dict[str, Any]:
    """The definition of ``stack`` as canonical JSON data (lists sorted by name)."""
    services = []
    for service in sorted(stack.services.values(), key=lambda s: s.name):
        handlers = []
        for h in sorted(service.handlers, key=lambda h: h.name):
            item: dict[str, Any] = {"name": h.name, "kind": h.kind}
            for key, value in (("bus", h.bus), ("stream", h.stream), ("every", h.every),
                               ("cron", h.cron), ("timeout", h.timeout),
                               ("concurrency", h.concurrency)):
                if value is not None:
                    item[key] = value
            if h.pattern is not None:
                item["pattern"] = _json(h.pattern)
            handlers.append(item)
        routes = [{"name": r.name, "method": r.method, "path": r.path,
                   "scopes": list(r.scopes), "public": r.public}
                  for r in sorted(service.routes, key=lambda r: r.name)]
        services.append({"name": service.name, "version": service.version,
                         "handlers": handlers, "routes": routes})
    buses = [
        {"name": bus.name, "partitions": bus.partitions,
         "archive_retention": bus.archive_retention,
         "rules": [{"name": rule.name, "pattern": _json(rule.pattern),
                    "targets": [_target(t) for t in rule.targets],
                    "transform": _transform(rule.transform)}
                   for rule in sorted(bus.rules, key=lambda r: r.name)]}
        for bus in sorted(stack.buses.values(), key=lambda b: b.name)
    ]
    workflows = [{"name": w.name, "version": w.version, "definition": _json(w.definition)}
                 for w in sorted(stack.workflows.values(), key=lambda w: w.name)]
    routing = None
    if stack.routes is not None:
        routing = {"weights": _json(stack.routes.weights), "sticky": stack.routes.sticky,
                   "header": stack.routes.header}
    return {
        "format": FORMAT,
        "stack": stack.name,
        "default_bus": stack.default_bus,
        "services": services,
        "buses": buses,
        "streams": [{"name": s.name, "partitions": s.partitions, "retention": s.retention}
                    for s in sorted(stack.streams.values(), key=lambda s: s.name)],
        "workflows": workflows,
        "routes": routing,
        "resources": resources.as_json(),
    }


def digest(definition: Mapping[str, Any]) -> str:
    """A short fingerprint of a definition (the first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(canonical(definition)).hexdigest()[:12]
