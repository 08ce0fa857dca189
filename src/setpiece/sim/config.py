"""How a simulation runs: time, load, seed, calls, network, discovery and chaos."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from setpiece.errors import ConfigError
from setpiece.http import BreakerPolicy, CallPolicy
from setpiece.sim.chaos import ChaosEvent

__all__ = ["Discovery", "Network", "SimConfig"]


@dataclass(frozen=True, slots=True)
class Network:
    """One-way latency of a message, in seconds: within a zone, between zones of a region,
    between regions."""

    zone: float = 0.0002
    cross_zone: float = 0.001
    cross_region: float = 0.06

    def __post_init__(self) -> None:
        if not (self.zone >= 0 and self.cross_zone >= 0 and self.cross_region >= 0):
            raise ConfigError("Network: latencies must not be negative")


@dataclass(frozen=True, slots=True)
class Discovery:
    """The registry of each zone (Eureka-like). A change reaches its own zone's registry after
    ``refresh`` seconds and the other zones' after ``replication``; an instance that dies
    without deregistering stays listed for ``eviction`` seconds (its lease)."""

    refresh: float = 1.0
    replication: float = 5.0
    eviction: float = 30.0

    def __post_init__(self) -> None:
        if not (self.refresh >= 0 and self.replication >= 0 and self.eviction >= 0):
            raise ConfigError("Discovery: delays must not be negative")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One run.

    * ``duration`` — simulated seconds; ``rate`` — outside requests per simulated second
      (None: half of what the busiest service can take);
    * ``calls`` — timeout, retries, backoff and breaker policy of every call (the runtime's
      :class:`~setpiece.CallPolicy`); ``breakers`` — False turns breakers off;
    * ``zone_affinity`` — share of calls kept in the caller's zone when it has instances (the
      rest spread over the region);
    * ``sample_interval`` — seconds between timeline samples (None: ``duration / 100``);
    * ``trace_every`` — trace one outside request in this many (0: none);
    * ``startup`` — seconds from launching an instance (autoscaling, code push) to serving.
    """

    duration: float = 60.0
    rate: float | None = None
    seed: int = 0
    calls: CallPolicy = field(default_factory=lambda: CallPolicy(
        timeout=1.0, retries=2, backoff=0.02, breaker=BreakerPolicy()))
    breakers: bool = True
    network: Network = field(default_factory=Network)
    discovery: Discovery = field(default_factory=Discovery)
    zone_affinity: float = 1.0
    sample_interval: float | None = None
    trace_every: int = 0
    startup: float = 5.0
    chaos: tuple[ChaosEvent, ...] = ()

    def __post_init__(self) -> None:
        if not self.duration > 0 or math.isinf(self.duration):
            raise ConfigError(f"duration: must be a positive number of seconds, "
                              f"got {self.duration!r}")
        if self.rate is not None and (not self.rate > 0 or math.isinf(self.rate)):
            raise ConfigError(f"rate: must be positive requests per second, got {self.rate!r}")
        if not 0 <= self.zone_affinity <= 1:
            raise ConfigError("zone_affinity: must be in [0, 1]")
        if self.sample_interval is not None and not self.sample_interval > 0:
            raise ConfigError("sample_interval: must be positive")
        if self.trace_every < 0 or self.startup < 0:
            raise ConfigError("trace_every and startup: must not be negative")
