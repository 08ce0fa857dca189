"""What a run gives back: the summary, per service and edge figures, the timeline, the graph,
and traces in Zipkin v2 and OTLP JSON.

Everything here is a function of the run alone (no wall-clock time, no memory figure), so the
same model, config and seed give byte-identical JSON; :func:`summary` adds the wall-clock
figures that the command line prints beside it.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Mapping
from typing import Any

from setpiece.sim.engine import Simulation

__all__ = ["dumps", "graph", "otlp", "peak_rss_bytes", "percentile", "report", "summary",
           "zipkin"]

BUCKET = 1e5  # latency histograms count in 10 µs buckets


def percentile(hist: Mapping[int, int], q: float) -> float:
    """The ``q`` quantile (0..1) of a latency histogram, in milliseconds."""
    total = sum(hist.values())
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            return round((key + 0.5) / BUCKET * 1000, 3)
    return 0.0  # pragma: no cover - the loop always reaches the rank


def _instance_name(sim: Simulation, inst: int) -> str:
    zone = sim.zones[sim.i_zone[inst]]
    region = sim.regions[sim.zone_region[sim.i_zone[inst]]]
    return f"{sim.model.name}.{region}.{zone}.{sim.svc_names[sim.i_svc[inst]]}{inst:05d}"


def _edge_name(sim: Simulation, e: int) -> tuple[str, str]:
    src, dst = sim.edges[e][0], sim.edges[e][1]
    return ("client" if src < 0 else sim.svc_names[src]), sim.svc_names[dst]


def report(sim: Simulation) -> dict[str, Any]:
    """The whole result of a run (deterministic)."""
    duration = sim.config.duration
    services: dict[str, Any] = {}
    for s, name in enumerate(sim.svc_names):
        done = sim.s_done[s]
        services[name] = {
            "requests": sim.s_req[s],
            "errors": sim.s_err[s],
            "refused": sim.s_refused[s],
            "p50_ms": percentile(sim.s_hist[s], 0.5),
            "p99_ms": percentile(sim.s_hist[s], 0.99),
            "throughput": round(sim.s_req[s] / duration, 3),
            "mean_sojourn_ms": round(sim.s_soj[s] / done * 1000, 6) if done else 0.0,
            "utilisation": round(sim.s_busy[s] / duration / max(
                1, sim.alive_count[s] * sim.costs[sim.svc_cost[s]].workers), 6),
            "instances": sim.alive_count[s],
        }
    edges = []
    for e in range(len(sim.edges)):
        src, dst = _edge_name(sim, e)
        calls = sim.e_calls[e]
        edges.append({
            "source": src, "target": dst, "kind": sim.edges[e][2], "leaf": sim.edges[e][3],
            "calls": calls, "errors": sim.e_errors[e], "retries": sim.e_retries[e],
            "timeouts": sim.e_timeouts[e], "throughput": round(calls / duration, 3),
            "mean_ms": round(sim.e_lat[e] / calls * 1000, 6) if calls else 0.0,
        })
    zones = {
        zone: {"requests": sim.root_zone_req[z], "errors": sim.root_zone_err[z]}
        for z, zone in enumerate(sim.zones)}
    return {
        "arch": sim.model.name,
        "seed": sim.config.seed,
        "instances": sim.initial_instances,
        "instances_at_end": sum(sim.alive_count),
        "messages": sim.messages,
        "simulated_seconds": duration,
        "rate": round(sim.rate, 6),
        "requests": sim.roots[0],
        "errors": sim.roots[1],
        "p50_ms": percentile(sim.root_lat, 0.5),
        "p99_ms": percentile(sim.root_lat, 0.99),
        "services": services,
        "edges": edges,
        "zones": zones,
        "log": list(sim.log),
        "timeline": sim.timeline,
    }


def peak_rss_bytes() -> int:
    """The peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def summary(sim: Simulation, wall_seconds: float,
            full: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary that ``setpiece sim --json`` prints (and ``--serve`` sends last): the
    deterministic figures of :func:`report` (``full``, computed when not given) and the
    wall-clock ones: ``wall_seconds``, ``peak_rss_bytes``, ``messages_per_second``."""
    if full is None:
        full = report(sim)
    out: dict[str, Any] = {
        key: full[key] for key in ("arch", "seed", "instances", "messages", "simulated_seconds",
                                   "rate", "requests", "errors", "p50_ms", "p99_ms")}
    out["wall_seconds"] = round(wall_seconds, 3)
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["messages_per_second"] = round(sim.messages / wall_seconds) if wall_seconds > 0 else 0
    out["services"] = {
        name: {k: s[k] for k in ("requests", "errors", "p50_ms", "p99_ms", "instances")}
        for name, s in full["services"].items()}
    return out


def graph(sim: Simulation) -> dict[str, Any]:
    """The architecture as a web page draws it: regions, zones, service nodes with their
    instance counts per zone, and the edges between services."""
    nodes = []
    for s, name in enumerate(sim.svc_names):
        spec = sim.model.services[s]
        per_zone = {zone: sim.alive_zone[s][z] for z, zone in enumerate(sim.zones)
                    if sim.alive_zone[s][z]}
        nodes.append({"id": name, "package": spec.package, "instances": sim.alive_count[s],
                      "zones": per_zone})
    nodes.append({"id": "client", "package": "client", "instances": 0, "zones": {}})
    seen: dict[tuple[str, str, str], None] = {}
    for e in range(len(sim.edges)):
        src, dst = _edge_name(sim, e)
        seen.setdefault((src, dst, sim.edges[e][2]), None)
    return {
        "arch": sim.model.name,
        "regions": [{"name": r, "zones": [z for n, z in enumerate(sim.zones)
                                          if sim.zone_region[n] == k]}
                    for k, r in enumerate(sim.regions)],
        "nodes": nodes,
        "edges": [{"source": s, "target": t, "kind": k} for s, t, k in seen],
        "managed": list(sim.model.managed),
    }


def _ids(span: tuple[Any, ...]) -> tuple[str, str, str]:
    trace, span_id, parent = span[0], span[1], span[2]
    return f"{trace:032x}", f"{span_id:016x}", (f"{parent:016x}" if parent else "")


def zipkin(sim: Simulation) -> list[dict[str, Any]]:
    """The traced requests as Zipkin v2 spans (one per call, on the callee's side)."""
    out = []
    for span in sim.spans:
        trace_id, span_id, parent_id = _ids(span)
        _, _, _, e, start, end, ok, inst, attempts = span
        src, dst = _edge_name(sim, e)
        item: dict[str, Any] = {
            "traceId": trace_id, "id": span_id, "name": f"call {dst}", "kind": "SERVER",
            "timestamp": round(start * 1e6), "duration": max(1, round((end - start) * 1e6)),
            "localEndpoint": {"serviceName": dst}, "remoteEndpoint": {"serviceName": src},
            "tags": {"sim.attempts": str(attempts),
                     "sim.instance": _instance_name(sim, inst) if inst >= 0 else "",
                     "sim.edge": sim.edges[e][2]},
        }
        if parent_id:
            item["parentId"] = parent_id
        if not ok:
            item["tags"]["error"] = "true"
        out.append(item)
    return out


def otlp(sim: Simulation) -> dict[str, Any]:
    """The traced requests as OTLP JSON (``resourceSpans``, one resource per service)."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for span in sim.spans:
        trace_id, span_id, parent_id = _ids(span)
        _, _, _, e, start, end, ok, inst, attempts = span
        src, dst = _edge_name(sim, e)
        attributes = [
            {"key": "peer.service", "value": {"stringValue": src}},
            {"key": "sim.attempts", "value": {"intValue": str(attempts)}},
        ]
        if inst >= 0:
            attributes.append({"key": "service.instance.id",
                               "value": {"stringValue": _instance_name(sim, inst)}})
        by_service.setdefault(dst, []).append({
            "traceId": trace_id, "spanId": span_id, "parentSpanId": parent_id,
            "name": f"call {dst}", "kind": 2,  # SPAN_KIND_SERVER
            "startTimeUnixNano": str(round(start * 1e9)),
            "endTimeUnixNano": str(round(end * 1e9)),
            "attributes": attributes,
            "status": {"code": 1 if ok else 2},
        })
    return {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": name}}]},
         "scopeSpans": [{"scope": {"name": "setpiece.sim"}, "spans": spans}]}
        for name, spans in sorted(by_service.items())]}


def dumps(data: Any) -> str:
    """JSON with sorted keys: the same data always gives the same bytes."""
    return json.dumps(data, sort_keys=True, indent=1) + "\n"
