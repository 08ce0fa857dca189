"""Rollouts: a second version of a service's event consumers, running beside the first.

::

    loyalty_v2 = Service("loyalty", version="2")      # the same handlers, new code

    stack = Stack("rewards", services=[loyalty], rollouts=[
        Rollout(loyalty_v2, mode="canary", share=0.3,
                abort=AbortPolicy(margin=0.05, min_deliveries=200)),
    ])

* ``canary`` — a ``share`` of partition keys (chosen by a stable hash of the key, the same in
  every process and run) goes to the candidate, the rest to the primary. Both versions are one
  consumer group, so a key's events are delivered in order, by one version at a time.
* ``shadow`` — the candidate receives a copy of every event the primary handled; its store
  writes go to a shadow namespace and its events to a shadow stream (never to a bus or stream
  that real consumers read), and both are compared with the primary's.

``setpiece version promote|abort SERVICE`` (or ``rt.versions``) ends a rollout; an
:class:`AbortPolicy` ends it by itself when the candidate fails more than the primary. The
runtime side is :mod:`setpiece.runtime.rollouts`; see ``docs/versions.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from setpiece.errors import ConfigError

if TYPE_CHECKING:
    from setpiece.service import Handler, Service

__all__ = ["AbortPolicy", "Rollout", "check_rollout"]

Mode = Literal["canary", "shadow"]


@dataclass(frozen=True, slots=True)
class AbortPolicy:
    """When a rollout aborts by itself.

    * ``margin`` — abort once the candidate's failure rate exceeds the primary's by more than
      this (0.05: five percentage points);
    * ``min_deliveries`` — but only once the candidate has taken at least this many deliveries
      (counted durably, across every worker and restart, for this candidate version).

    A failure is a delivery whose first attempt in that version raised (anything but
    :class:`~setpiece.Drop`).
    """

    margin: float = 0.05
    min_deliveries: int = 100

    def __post_init__(self) -> None:
        if (isinstance(self.margin, bool) or not isinstance(self.margin, int | float)
                or not 0 <= self.margin < 1):
            raise ConfigError(f"AbortPolicy.margin: must be in [0, 1), got {self.margin!r}")
        if (isinstance(self.min_deliveries, bool) or not isinstance(self.min_deliveries, int)
                or self.min_deliveries < 1):
            raise ConfigError(
                f"AbortPolicy.min_deliveries: must be a positive integer, "
                f"got {self.min_deliveries!r}"
            )


@dataclass(frozen=True, slots=True, eq=False)
class Rollout:
    """A candidate version of a service, run beside the version the stack declares.

    ``candidate`` is a :class:`~setpiece.Service` with the primary's name and another
    ``version``. Its event and stream handlers are matched to the primary's by name and must
    subscribe to the same bus and pattern, or the same stream; a handler the candidate lacks
    stays with the primary. Schedules, workflow tasks and HTTP routes are not versioned here
    (the primary's run; HTTP versions are routed with :class:`~setpiece.VersionRoutes`).

    * ``mode`` — ``"canary"`` or ``"shadow"``;
    * ``share`` — canary only: the share of partition keys the candidate takes, in [0, 1]
      (events without a partition key are shared by event id);
    * ``abort`` — when to abort by itself (None: only by hand).
    """

    candidate: Service
    mode: Mode = "canary"
    share: float | None = None
    abort: AbortPolicy | None = field(default_factory=AbortPolicy)

    def __post_init__(self) -> None:
        from setpiece.service import Service  # a declaration: no cycle at import time

        if not isinstance(self.candidate, Service):
            raise ConfigError(
                f"Rollout.candidate: expected a Service, got {type(self.candidate).__name__}"
            )
        where = f"Rollout of service {self.candidate.name!r}"
        if self.mode not in ("canary", "shadow"):
            raise ConfigError(f"{where}: mode must be 'canary' or 'shadow', got {self.mode!r}")
        if self.mode == "canary":
            share = self.share
            if share is None:
                raise ConfigError(f"{where}: a canary needs share= (the share of partition "
                                  "keys the candidate takes, in [0, 1])")
            if (isinstance(share, bool) or not isinstance(share, int | float)
                    or not math.isfinite(share) or not 0 <= share <= 1):
                raise ConfigError(f"{where}: share must be in [0, 1], got {share!r}")
            object.__setattr__(self, "share", float(share))
        elif self.share is not None:
            raise ConfigError(f"{where}: a shadow receives every event; share= is for canaries")
        if self.abort is not None and not isinstance(self.abort, AbortPolicy):
            raise ConfigError(f"{where}: abort must be an AbortPolicy or None")

    @property
    def service(self) -> str:
        """The name of the service (the primary's and the candidate's)."""
        return self.candidate.name

    @property
    def version(self) -> str:
        """The candidate's version."""
        return self.candidate.version

    def handler(self, name: str) -> Handler | None:
        """The candidate's event or stream handler named ``name``, if it has one."""
        for handler in self.candidate.handlers:
            if handler.name == name and handler.kind in ("event", "stream"):
                return handler
        return None


def check_rollout(rollout: Rollout, primary: Service | None) -> None:
    """Raise ConfigError unless ``rollout`` fits ``primary`` (the stack's service of its name)."""
    where = f"Rollout of service {rollout.service!r}"
    if primary is None:
        raise ConfigError(f"{where}: the stack declares no service {rollout.service!r}")
    if primary is rollout.candidate:
        raise ConfigError(f"{where}: the candidate is the primary itself; pass the new version")
    if primary.version == rollout.version:
        raise ConfigError(f"{where}: the candidate's version {rollout.version!r} is the "
                          "primary's too; give it another (Service(..., version='2'))")
    own = {h.name: h for h in primary.handlers}
    for handler in rollout.candidate.handlers:
        if handler.kind not in ("event", "stream"):
            continue
        mine = f"{where}: handler {handler.name!r}"
        other = own.get(handler.name)
        if other is None or other.kind not in ("event", "stream"):
            raise ConfigError(f"{mine} has no event or stream handler of that name in version "
                              f"{primary.version!r} (a new handler is a new consumer group: "
                              "deploy it in the service, not as a candidate)")
        if (other.kind, other.bus, other.stream) != (handler.kind, handler.bus, handler.stream):
            raise ConfigError(f"{mine}: subscribes to "
                              f"{_source(handler)}, version {primary.version!r} to "
                              f"{_source(other)}; both versions must read the same one")
        if other.kind == "event" and other.pattern != handler.pattern:
            raise ConfigError(f"{mine}: its pattern differs from version {primary.version!r}'s; "
                              "both versions must accept the same events")


def _source(handler: Handler) -> str:
    return f"bus {handler.bus!r}" if handler.kind == "event" else f"stream {handler.stream!r}"
