"""Service level objectives: durable good/bad counts, error budgets, burn-rate alerts.

Every worker counts the attempts of the handlers and routes an :class:`~setpiece.SLO` covers,
and adds its counts now and then (``Observability.slo_interval``, on the runtime's clock) to
time buckets in the engine's key-value store (namespace ``setpiece:slo``): one-minute buckets,
kept six hours, for the short windows, and one-hour buckets, kept over the SLO's window, for the
long ones. So the figures are the whole deployment's, whichever worker reads them.

The arithmetic is the Google SRE workbook's ("Alerting on SLOs"):

- error rate over a window = bad / (good + bad);
- burn rate = error rate / (1 - objective): 1 spends the budget exactly over the SLO's window;
- error budget remaining = 1 - (bad / total over the SLO's window) / (1 - objective);
- multi-window, multi-burn-rate alerts: an alert fires while the burn rate over its long
  window AND over its short window are both at least its factor (:data:`ALERTS`: 14.4x over
  1 h and 5 min, 6x over 6 h and 30 min pages; 3x over 1 day and 2 h, 1x over 3 days and 6 h
  tickets).

When an alert starts firing, the worker that sees it first publishes ``setpiece.slo.burning``
on the stack's default bus, in the same unit of work that records the alert's state (so one
event per alert, whatever the number of workers); services handle it like any other event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from setpiece.engine.contract import Engine, KVRead, KVWrite, UnitOfWork
from setpiece.errors import ConflictError
from setpiece.event import Event
from setpiece.observability import SLO

__all__ = ["ALERTS", "BURNING", "NS", "Alert", "SLOStatus", "evaluate", "read_buckets",
           "record_counts"]

NS = "setpiece:slo"
BURNING = "setpiece.slo.burning"
MINUTE, HOUR = 60, 3600
MINUTES_KEPT = 6 * HOUR + 2 * MINUTE


@dataclass(frozen=True, slots=True)
class Alert:
    """A multi-window, multi-burn-rate alert (the SRE workbook's table)."""

    severity: str
    factor: float
    long: float  # seconds
    short: float


ALERTS: tuple[Alert, ...] = (
    Alert("page", 14.4, HOUR, 5 * MINUTE),
    Alert("page", 6.0, 6 * HOUR, 30 * MINUTE),
    Alert("ticket", 3.0, 24 * HOUR, 2 * HOUR),
    Alert("ticket", 1.0, 3 * 24 * HOUR, 6 * HOUR),
)

Buckets = dict[int, tuple[int, int]]  # bucket start (s) -> (good, bad)


@dataclass(frozen=True, slots=True)
class SLOStatus:
    """Where one SLO stands at ``now``."""

    target: str
    objective: float
    latency: float | None
    window: float
    good: int  # over the window
    bad: int
    budget_remaining: float  # 1: untouched; 0: spent; below 0: overspent
    burn_rates: dict[str, float] = field(default_factory=dict)  # by window ("1h", "5m", ...)
    firing: tuple[str, ...] = ()  # the alerts firing, as "page 14.4x 1h/5m"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "objective": self.objective, "latency": self.latency,
            "window": self.window, "good": self.good, "bad": self.bad,
            "budget_remaining": self.budget_remaining, "burn_rates": dict(self.burn_rates),
            "firing": list(self.firing),
        }


def label(seconds: float) -> str:
    """``300`` -> ``"5m"``, ``3600`` -> ``"1h"``, ``86400`` -> ``"1d"``."""
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 60)}m"


def alert_name(alert: Alert) -> str:
    return f"{alert.severity} {alert.factor:g}x {label(alert.long)}/{label(alert.short)}"


def counts(buckets: Buckets, size: int, now: float, seconds: float) -> tuple[int, int]:
    """Good and bad over the ``seconds`` before ``now``, from buckets of ``size`` seconds (a
    bucket counts when it overlaps the window)."""
    since = now - seconds
    good = bad = 0
    for start, (g, b) in buckets.items():
        if start + size > since and start <= now:
            good += g
            bad += b
    return good, bad


def burn_rate(good: int, bad: int, slo: SLO) -> float:
    total = good + bad
    return 0.0 if total == 0 else (bad / total) / slo.budget


def evaluate(target: str, slo: SLO, minutes: Buckets, hours: Buckets, now: float) -> SLOStatus:
    """The status of ``slo`` at ``now`` from its buckets (see the module docstring)."""

    def over(seconds: float) -> tuple[int, int]:
        if seconds <= 6 * HOUR:
            return counts(minutes, MINUTE, now, seconds)
        return counts(hours, HOUR, now, seconds)

    good, bad = over(slo.window)
    total = good + bad
    remaining = 1.0 if total == 0 else 1.0 - (bad / total) / slo.budget
    rates: dict[str, float] = {}
    firing: list[str] = []
    for alert in ALERTS:
        long_rate = burn_rate(*over(alert.long), slo)
        short_rate = burn_rate(*over(alert.short), slo)
        rates[label(alert.long)] = long_rate
        rates[label(alert.short)] = short_rate
        if long_rate >= alert.factor and short_rate >= alert.factor:
            firing.append(alert_name(alert))
    return SLOStatus(target, slo.objective, slo.latency, slo.window, good, bad,
                     remaining if math.isfinite(remaining) else 0.0, rates, tuple(firing))


def _key(kind: str, target: str, start: int) -> str:
    return f"{kind}:{target}:{start:012d}"


async def record_counts(engine: Engine, pending: Mapping[str, tuple[int, int]], now: float
                        ) -> None:
    """Add ``pending`` (target -> good, bad) to the buckets of ``now`` (compare-and-set: the
    counts of concurrent workers add up)."""
    if not pending:
        return
    minute, hour = int(now // MINUTE) * MINUTE, int(now // HOUR) * HOUR
    keys = [k for t in pending for k in (_key("m", t, minute), _key("h", t, hour))]
    while True:
        found = await engine.kv_get(NS, keys)
        unit = UnitOfWork()
        for target, (good, bad) in pending.items():
            for key in (_key("m", target, minute), _key("h", target, hour)):
                value, version = found.get(key, (b"[0,0]", 0))
                g, b = msgspec.json.decode(value)
                unit.reads.append(KVRead(NS, key, version))
                unit.writes.append(KVWrite(NS, key, msgspec.json.encode([g + good, b + bad])))
        try:
            await engine.commit(unit)
            return
        except ConflictError:
            continue  # another worker added its counts first: add ours to theirs


async def read_buckets(engine: Engine, target: str) -> tuple[Buckets, Buckets]:
    """The minute and hour buckets of ``target``."""
    out: list[Buckets] = []
    for kind in ("m", "h"):
        rows = await engine.kv_scan(NS, f"{kind}:{target}:", 1_000_000)
        buckets: Buckets = {}
        for key, value in rows:
            g, b = msgspec.json.decode(value)
            buckets[int(key.rsplit(":", 1)[1])] = (g, b)
        out.append(buckets)
    return out[0], out[1]


async def prune(engine: Engine, target: str, slo: SLO, now: float) -> None:
    """Forget buckets no window needs any more."""
    keep = {"m": now - MINUTES_KEPT, "h": now - max(slo.window, ALERTS[-1].long) - HOUR}
    writes = []
    for kind, since in keep.items():
        for key, _ in await engine.kv_scan(NS, f"{kind}:{target}:", 1_000_000):
            if int(key.rsplit(":", 1)[1]) < since:
                writes.append(KVWrite(NS, key, None))
    if writes:
        await engine.commit(UnitOfWork(writes=writes))


async def alert_transition(
    engine: Engine, status: SLOStatus, make_event: Any
) -> bool:
    """Record which alerts of ``status`` fire; when one starts firing, append the event
    ``make_event(status, started)`` gives, in the same unit of work. True if this call did."""
    key = f"alert:{status.target}"
    found = await engine.kv_get(NS, [key])
    value, version = found.get(key, (b"[]", 0))
    before = set(msgspec.json.decode(value))
    now_firing = set(status.firing)
    if now_firing == before:
        return False
    started = sorted(now_firing - before)
    unit = UnitOfWork(reads=[KVRead(NS, key, version)],
                      writes=[KVWrite(NS, key, msgspec.json.encode(sorted(now_firing)))])
    if started:
        unit.appends.append(make_event(status, started))
    try:
        await engine.commit(unit)
    except ConflictError:
        return False  # another worker recorded it (and published) first
    return bool(started)


def burning_event(status: SLOStatus, started: list[str], stack: str) -> Event:
    return Event(type=BURNING, source=f"setpiece/{stack}/slo", subject=status.target,
                 data={**status.to_dict(), "started": started})
