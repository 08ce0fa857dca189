"""``setpiece sim``: the public contract, traces, graph, determinism and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from setpiece.cli.app import app
from tests.sim.conftest import ARCHS

SHOP = str(ARCHS / "shop_arch.json")


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_json_summary_has_the_public_keys() -> None:
    result = cli("sim", SHOP, "--duration", "3", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("instances", "messages", "simulated_seconds", "wall_seconds", "peak_rss_bytes",
                "services"):
        assert key in data
    assert data["instances"] == 24 and data["simulated_seconds"] == 3
    assert data["messages"] > 0 and data["peak_rss_bytes"] > 1_000_000
    for service in data["services"].values():
        assert {"requests", "errors", "p50_ms", "p99_ms"} <= set(service)
    assert data["services"]["proxy"]["requests"] > 0


def test_scale_and_instances() -> None:
    data = json.loads(cli("sim", SHOP, "--duration", "1", "--scale", "3", "--json").stdout)
    assert data["instances"] == 72
    data = json.loads(cli("sim", SHOP, "--duration", "1", "--instances", "240",
                          "--json").stdout)
    assert data["instances"] == 240


def _run(tmp: Path, seed: int) -> dict[str, bytes]:
    files = {name: tmp / f"{name}-{seed}.json" for name in ("zipkin", "otlp", "graph", "report")}
    chaos = tmp / "chaos.json"
    chaos.write_text(json.dumps({"events": [
        {"at": 1, "action": "kill_instance", "service": "web", "count": 2},
        {"at": 2, "action": "latency", "service": "db", "add_ms": 5, "duration": 1}]}))
    result = cli("sim", SHOP, "--duration", "4", "--seed", str(seed), "--chaos", str(chaos),
                 "--trace-every", "50", *[arg for name, path in files.items()
                                          for arg in (f"--{name}", str(path))])
    assert result.exit_code == 0, result.output
    return {name: path.read_bytes() for name, path in files.items()}


def test_same_seed_same_output_byte_for_byte(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", 5) if (tmp_path / "a").mkdir() is None else {}
    second = _run(tmp_path / "b", 5) if (tmp_path / "b").mkdir() is None else {}
    assert first == second
    other = _run(tmp_path / "c", 6) if (tmp_path / "c").mkdir() is None else {}
    assert other["report"] != first["report"]


def test_traces_and_graph(tmp_path: Path) -> None:
    files = _run(tmp_path, 1)
    spans = json.loads(files["zipkin"])
    assert spans and {"traceId", "id", "name", "timestamp", "duration", "localEndpoint"} <= set(
        spans[0])
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        assert len(span["traceId"]) == 32 and len(span["id"]) == 16
        traces.setdefault(span["traceId"], []).append(span)
    for trace in traces.values():
        ids = {s["id"] for s in trace}
        roots = [s for s in trace if "parentId" not in s]
        assert len(roots) == 1 and roots[0]["remoteEndpoint"]["serviceName"] == "client"
        assert all(s["parentId"] in ids for s in trace if "parentId" in s)
    otlp = json.loads(files["otlp"])
    names = [r["resource"]["attributes"][0]["value"]["stringValue"]
             for r in otlp["resourceSpans"]]
    assert "proxy" in names
    count = sum(len(r["scopeSpans"][0]["spans"]) for r in otlp["resourceSpans"])
    assert count == len(spans)
    graph = json.loads(files["graph"])
    assert graph["regions"] == [{"name": "us-east-1",
                                 "zones": ["us-east-1a", "us-east-1b", "us-east-1c"]}]
    assert {"source": "proxy", "target": "web", "kind": "sync"} in graph["edges"]
    web = next(n for n in graph["nodes"] if n["id"] == "web")
    assert web["instances"] == 4  # two killed
    report = json.loads(files["report"])
    assert report["timeline"] and "1.000 kill_instance" in report["log"]


def test_a_stack_target_with_a_cost_model(tmp_path: Path) -> None:
    from tests.sim.shop_stack import COSTS

    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps(COSTS))
    result = cli("sim", "tests.sim.shop_stack:stack", "--costs", str(costs), "--duration", "2",
                 "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["services"]["analytics.count"]["requests"] > 0


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    bad_chaos = tmp_path / "chaos.json"
    bad_chaos.write_text('[{"at": 1, "action": "kill_zone", "zone": "atlantis"}]')
    cases = [
        ((str(ARCHS / "invalid_json_arch.json"),), "not valid JSON"),
        ((str(ARCHS / "unknown_dependency_arch.json"),), "unknown service 'ledger'"),
        ((SHOP, "--chaos", str(bad_chaos)), "unknown zone 'atlantis'"),
        ((SHOP, "--duration", "0"), "duration: must be a positive"),
        (("tests.sim.shop_stack:stack", "--scale", "2"), "--scale and --instances apply"),
    ]
    for args, message in cases:
        result = cli("sim", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, result.output


def test_autoscale_option_grows_a_loaded_service(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = cli("sim", SHOP, "--duration", "40", "--rate", "700", "--autoscale", "0.1",
                 "--report", str(report))
    assert result.exit_code == 0, result.output
    log = json.loads(report.read_text())["log"]
    assert any("autoscale" in line and "+" in line for line in log), log
    bad = cli("sim", SHOP, "--autoscale", "2")
    assert bad.exit_code == 2 and "autoscale target" in bad.output
