"""What a stack declares about its HTTP face: plain data that the gateway serves.

::

    Stack("app", services=[notes],
          auth=JWTAuth(secret="dev-secret", audience="app"),      # any Authenticator
          routes=VersionRoutes({"notes": {"1": 90, "2": 10}}),      # 90 % primary, 10 % canary
          calls=CallPolicy(timeout=5.0, breaker=BreakerPolicy(failures=3)))

* :class:`VersionRoutes` — the weight of each live version of a service (how a version is then
  chosen per request: :mod:`setpiece.gateway.routing`);
* :class:`CallPolicy` and :class:`BreakerPolicy` — timeouts, retries and circuit breakers of the
  gateway's calls (the breakers themselves: :mod:`setpiece.gateway.breaker`);
* :class:`Authenticator` — what the gateway asks of ``auth`` (:class:`~setpiece.JWTAuth` is one).

The routes themselves are declared on services (``@svc.get``) and checked together by
:mod:`setpiece.route_table`. Nothing here runs a request: this module imports only the errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from setpiece.errors import ConfigError
from setpiece.policy import RetryPolicy

__all__ = [
    "EVENTS_SCOPE", "VERSION_HEADER", "Authenticator", "BreakerPolicy", "CallPolicy",
    "VersionRoutes",
]

VERSION_HEADER = "x-setpiece-version"
EVENTS_SCOPE = "events:publish"
"""The scope a token needs to publish onto a bus over HTTP (``POST /events/{bus}``), with auth."""


class Authenticator(Protocol):
    """What the gateway asks of a stack's ``auth``: :class:`~setpiece.JWTAuth` is one.

    ``authenticate`` turns an ``Authorization`` header (or None) into the caller's identity, or
    raises :class:`~setpiece.errors.AuthError` (401); ``authorize`` raises it (403) unless the
    identity holds every scope; ``realm`` names the realm in ``WWW-Authenticate``.
    """

    realm: str

    async def authenticate(self, authorization: str | None) -> Any: ...

    def authorize(self, identity: Any, scopes: Iterable[str]) -> None: ...


# -- version weights ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionRoutes:
    """Per service, the weight of each version (relative integers, e.g. 90 and 10)."""

    weights: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    sticky: bool = False
    header: str = VERSION_HEADER

    def __post_init__(self) -> None:
        frozen: dict[str, Mapping[str, int]] = {}
        for service, table in dict(self.weights).items():
            if not isinstance(table, Mapping) or not table:
                raise ConfigError(f"VersionRoutes: {service!r} needs a {{version: weight}} map")
            for version, weight in table.items():
                if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                    raise ConfigError(f"VersionRoutes: {service!r} version {version!r}: the "
                                      f"weight must be a non-negative integer, got {weight!r}")
            if sum(table.values()) <= 0:
                raise ConfigError(f"VersionRoutes: {service!r}: the weights add up to 0")
            frozen[service] = MappingProxyType({str(v): w for v, w in table.items()})
        object.__setattr__(self, "weights", MappingProxyType(frozen))
        object.__setattr__(self, "header", self.header.lower())

    def __hash__(self) -> int:
        return hash((tuple((s, tuple(t.items())) for s, t in self.weights.items()),
                     self.sticky, self.header))


# -- calls and breakers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open.

    * ``failures`` — consecutive failures that open it;
    * ``failure_rate`` — or this share of failures among the last ``window`` calls (once at
      least ``min_calls`` were made);
    * ``cooldown`` — seconds open before one probe call is let through;
    * ``panic_threshold`` — when the share of a version's instances whose breaker is closed falls
      below this, breakers are ignored for that version (Envoy's panic threshold; 0: never).
    """

    failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    cooldown: float = 5.0
    panic_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window < 1 or self.min_calls < 1:
            raise ConfigError("BreakerPolicy: failures, window and min_calls must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ConfigError("BreakerPolicy.failure_rate: must be in (0, 1]")
        if self.cooldown < 0:
            raise ConfigError("BreakerPolicy.cooldown: must not be negative")
        if not 0 <= self.panic_threshold <= 1:
            raise ConfigError("BreakerPolicy.panic_threshold: must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How the gateway (and ``ctx.call``) calls an instance.

    * ``timeout`` — seconds for one attempt (504 when it runs out);
    * ``retries`` — further attempts, on another instance when there is one, for idempotent
      methods (GET, HEAD, PUT, DELETE) after a transport error, a timeout, a 502/503/504 or an
      open breaker — never after a 500 (the handler ran and failed; running it again would too);
    * ``backoff`` — seconds before the first retry, doubled for each one after;
    * ``breaker`` — the breaker policy of every instance.
    """

    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.02
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ConfigError("CallPolicy.timeout: must be positive")
        if self.retries < 0 or self.backoff < 0:
            raise ConfigError("CallPolicy: retries and backoff must not be negative")

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retries as a :class:`~setpiece.RetryPolicy`: ``1 + retries`` attempts, the n-th
        retry after ``backoff * 2 ** (n - 1)`` seconds (no cap, no jitter)."""
        return RetryPolicy(
            max_attempts=1 + self.retries, initial_delay=self.backoff, max_delay=math.inf,
            multiplier=2.0, jitter=0,
        )
