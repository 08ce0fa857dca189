"""``setpiece slo`` and ``setpiece top``: the SLOs from the engine, the live figures from a
runtime's ``/metrics``."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from setpiece.cli._common import CliError
from setpiece.engine.contract import Engine
from setpiece.stack import Stack

__all__ = ["Row", "Scrape", "parse_metrics", "rows", "scrape", "slo_statuses"]


async def slo_statuses(stack: Stack, engine: Engine, now: float | None = None) -> list[Any]:
    """Every SLO of the stack at ``now`` (the system's time by default), from the engine."""
    from setpiece.observe._slo import evaluate, read_buckets

    observe = stack.observe
    if observe is None or not observe.slos:
        raise CliError(f"stack {stack.name!r} declares no SLO: Observability(slos={{...}})")
    now = time.time() if now is None else now
    out = []
    for target, slo in observe.slos.items():
        minutes, hours = await read_buckets(engine, target)
        out.append(evaluate(target, slo, minutes, hours, now))
    return out


@dataclass
class Scrape:
    """One reading of a ``/metrics`` page: per consumer or route, counts and histograms."""

    at: float
    counts: dict[tuple[str, str], float] = field(default_factory=dict)  # (metric, key)
    buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # key -> le, n
    lag: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str, at: float) -> Scrape:
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise CliError("setpiece top needs prometheus-client: pip install 'setpiece[otel]'"
                       ) from None
    found = Scrape(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            name = sample.name
            if "consumer" in labels:
                key = f"handler {labels['consumer']}"
            elif "route" in labels:
                key = f"route {labels['method']} {labels['route']}"
            elif name == "setpiece_consumer_lag":
                key = f"handler {labels['group']}"
                found.lag[key] = found.lag.get(key, 0) + sample.value
                continue
            else:
                continue
            if name.endswith("_bucket"):
                bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                found.buckets.setdefault(key, []).append((bound, sample.value))
            elif name == "setpiece_http_requests_total":
                found.counts[("requests", key)] = found.counts.get(("requests", key), 0) \
                    + sample.value
                if labels.get("status", "").startswith("5"):
                    found.counts[("failures", key)] = found.counts.get(("failures", key), 0) \
                        + sample.value
            elif name in ("setpiece_deliveries_total", "setpiece_delivery_failures_total"):
                kind = "requests" if name == "setpiece_deliveries_total" else "failures"
                found.counts[(kind, key)] = sample.value
    return found


def scrape(url: str, token: str | None) -> Scrape:
    request = urllib.request.Request(url)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            text = reply.read().decode()
    except OSError as exc:
        raise CliError(f"--metrics {url}: {exc}", 3) from None
    return parse_metrics(text, time.monotonic())


def _quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
              ) -> float | None:
    """The bucket bound under which ``q`` of the observations between two scrapes fall."""
    old = dict(before)
    cumulative = sorted((le, n - old.get(le, 0)) for le, n in after)
    total = cumulative[-1][1] if cumulative else 0
    if total <= 0:
        return None
    for le, n in cumulative:
        if n >= q * total:
            return le
    return None


@dataclass(frozen=True)
class Row:
    name: str
    rate: float
    p50: float | None
    p99: float | None
    errors: float
    lag: float | None
    budget: float | None


def rows(before: Scrape, after: Scrape, budgets: dict[str, float]) -> list[Row]:
    """One row per handler and route: rates and error rates between the two scrapes,
    latency quantiles of those attempts, lag now, SLO budget remaining."""
    seconds = max(after.at - before.at, 1e-9)
    names = sorted({key for _, key in after.counts} | set(after.lag))
    out = []
    for key in names:
        done = after.counts.get(("requests", key), 0) - before.counts.get(("requests", key), 0)
        failed = after.counts.get(("failures", key), 0) - before.counts.get(("failures", key), 0)
        hist_before, hist_after = before.buckets.get(key, []), after.buckets.get(key, [])
        target = key.split(" ", 1)[1]
        out.append(Row(key, done / seconds, _quantile(hist_before, hist_after, 0.5),
                       _quantile(hist_before, hist_after, 0.99),
                       failed / done if done else 0.0, after.lag.get(key),
                       budgets.get(target)))
    return out
