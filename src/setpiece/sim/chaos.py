"""Chaos and operations at given simulated times, from a JSON spec (``--chaos SPEC.json``).

::

    {"events": [
      {"at": 10, "action": "kill_instance", "service": "homepage", "count": 2},
      {"at": 20, "action": "kill_zone", "zone": "us-east-1a"},
      {"at": 30, "action": "kill_region", "region": "us-west-2"},
      {"at": 5,  "action": "latency", "service": "subscriber", "add_ms": 50, "duration": 10},
      {"at": 5,  "action": "partition", "zones": ["us-east-1a", "us-east-1b"], "duration": 10},
      {"at": 40, "action": "push", "service": "homepage", "version": "2", "waves": 3,
       "interval": 10, "latency_ms": 3, "error_rate": 0.01}
    ]}

A bare list of events is accepted too. Every mistake raises :class:`ConfigError` naming the
event (its index) and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from setpiece.errors import ConfigError
from setpiece.sim.files import read_json

__all__ = ["ACTIONS", "ChaosEvent", "load_chaos", "parse_chaos"]

# action -> (required fields, optional fields)
ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "kill_instance": (frozenset({"service"}), frozenset({"count"})),
    "kill_zone": (frozenset({"zone"}), frozenset()),
    "kill_region": (frozenset({"region"}), frozenset()),
    "latency": (frozenset({"add_ms"}), frozenset({"service", "duration"})),
    "partition": (frozenset({"zones"}), frozenset({"duration"})),
    "push": (frozenset({"service", "version"}),
             frozenset({"waves", "interval", "latency_ms", "error_rate"})),
}


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """One action at simulated second ``at`` (the fields that the action does not use are
    left at their defaults)."""

    at: float
    action: str
    service: str = ""
    count: int = 1
    zone: str = ""
    region: str = ""
    add_ms: float = 0.0
    duration: float = math.inf
    zones: tuple[str, ...] = ()
    version: str = ""
    waves: int = 1
    interval: float = 0.0
    latency_ms: float | None = None
    error_rate: float | None = None


def load_chaos(path: str | Path) -> tuple[ChaosEvent, ...]:
    path = Path(path)
    data = read_json(path, f"chaos spec {path}")
    try:
        return parse_chaos(data)
    except ConfigError as exc:
        raise ConfigError(f"chaos spec {path}: {exc}") from None


def _number(value: Any, where: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum \
            or math.isinf(value):
        raise ConfigError(f"{where}: must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def parse_chaos(data: Any) -> tuple[ChaosEvent, ...]:
    """Check a decoded chaos spec and return its events, in time order."""
    if isinstance(data, dict):
        unknown = set(data) - {"events"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} (expected 'events')")
        data = data.get("events")
    if not isinstance(data, list):
        raise ConfigError("'events' must be a list of events")
    out = []
    for n, item in enumerate(data):
        where = f"events[{n}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object")
        action = item.get("action")
        if action not in ACTIONS:
            raise ConfigError(f"{where}.action: {action!r} is not one of {sorted(ACTIONS)}")
        required, optional = ACTIONS[action]
        missing = required - set(item)
        if missing:
            raise ConfigError(f"{where} ({action}): missing {sorted(missing)}")
        extra = set(item) - required - optional - {"at", "action"}
        if extra:
            raise ConfigError(f"{where} ({action}): unknown field(s) {sorted(extra)}")
        if "at" not in item:
            raise ConfigError(f"{where} ({action}): missing 'at' (simulated seconds)")
        fields: dict[str, Any] = {"at": _number(item["at"], f"{where}.at"), "action": action}
        for key in ("service", "zone", "region", "version"):
            if key in item:
                if not isinstance(item[key], str) or not item[key]:
                    raise ConfigError(f"{where}.{key}: must be a non-empty string")
                fields[key] = item[key]
        if "count" in item:
            count = item["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"{where}.count: must be an integer >= 1, got {count!r}")
            fields["count"] = count
        if "waves" in item:
            waves = item["waves"]
            if isinstance(waves, bool) or not isinstance(waves, int) or waves < 1:
                raise ConfigError(f"{where}.waves: must be an integer >= 1, got {waves!r}")
            fields["waves"] = waves
        for key in ("add_ms", "interval", "latency_ms"):
            if key in item:
                fields[key] = _number(item[key], f"{where}.{key}")
        if "duration" in item:
            fields["duration"] = _number(item["duration"], f"{where}.duration", minimum=1e-9)
        if "error_rate" in item:
            rate = _number(item["error_rate"], f"{where}.error_rate")
            if rate > 1:
                raise ConfigError(f"{where}.error_rate: must be in [0, 1], got {rate!r}")
            fields["error_rate"] = rate
        if "zones" in item:
            zones = item["zones"]
            if not isinstance(zones, list) or len(zones) < 2 or \
                    not all(isinstance(z, str) for z in zones):
                raise ConfigError(f"{where}.zones: must list at least two zone names")
            fields["zones"] = tuple(zones)
        out.append(ChaosEvent(**fields))
    out.sort(key=lambda e: e.at)
    return tuple(out)
