"""``setpiece sim --serve``: the WebSocket protocol (graph, ticks in simulated time, the summary
of ``--json``), the pace a page asks for, and the page's files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import setpiece
from setpiece.cli.app import app
from setpiece.errors import ConfigError
from setpiece.sim import SimConfig, Simulation, load_chaos, load_spigo
from setpiece.sim.serve import LiveRun, parse_speed, sim_app
from tests.sim.conftest import ARCHS

with warnings.catch_warnings():  # newer Starlettes would rather drive httpx2 than httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SHOP = str(ARCHS / "shop_arch.json")
WALL = ("wall_seconds", "peak_rss_bytes", "messages_per_second")


def frames(client: TestClient, query: str = "?speed=max") -> list[dict[str, Any]]:
    out = []
    with client.websocket_connect(f"/ws{query}") as ws:
        while not out or out[-1]["type"] not in ("summary", "error"):
            out.append(ws.receive_json())
    return out


def live(duration: float = 4, seed: int = 3, speed: float | None = None,
         chaos: Path | None = None, rate: float | None = None) -> LiveRun:
    config = SimConfig(duration=duration, seed=seed, rate=rate,
                       chaos=load_chaos(chaos) if chaos else ())
    return LiveRun(Simulation(load_spigo(SHOP), config), speed)


def test_graph_first_then_ticks_in_simulated_time_then_the_json_summary(
        tmp_path: Path) -> None:
    chaos = tmp_path / "chaos.json"
    chaos.write_text(json.dumps({"events": [
        {"at": 1, "action": "kill_instance", "service": "web", "count": 6}]}))
    with TestClient(sim_app(live(chaos=chaos))) as client:
        got = frames(client)
        again = frames(client)  # a second page sees the same run from its start
    assert got == again
    assert got[0]["type"] == "graph"
    graph = got[0]["graph"]
    assert {n["id"] for n in graph["nodes"]} == {
        "db", "cache", "catalog", "cart", "web", "proxy", "client"}
    assert graph["regions"][0]["zones"] and got[0]["duration"] == 4
    ticks = got[1:-1]
    assert len(ticks) >= 50 and all(t["type"] == "tick" for t in ticks)
    times = [t["t"] for t in ticks]
    assert times == sorted(set(times)) and times[0] > 0 and times[-1] == pytest.approx(4)
    assert sum(t["services"]["proxy"]["requests"] for t in ticks) > 0
    assert any(t["edges"] and any(e["calls"] for e in t["edges"]) for t in ticks)
    # the chaos event shows in the tick that follows it, and the killed service stays dead
    killed = next(t for t in ticks if t["events"])
    assert "kill_instance" in killed["events"][0] and killed["t"] >= 1
    assert killed["services"]["web"] == {**killed["services"]["web"], "instances": 0,
                                         "stopped": 6, "zones": {}}
    assert ticks[-1]["services"]["web"]["instances"] == 0
    assert any(t["services"]["proxy"]["errors"] for t in ticks if t["t"] > 1)
    # the summary is --json's for the same seed (but for the wall-clock figures)
    assert got[-1]["type"] == "summary"
    served = {k: v for k, v in got[-1]["summary"].items() if k not in WALL}
    result = CliRunner().invoke(app, ["sim", SHOP, "--duration", "4", "--seed", "3",
                                      "--chaos", str(chaos), "--json"])
    assert result.exit_code == 0, result.output
    printed = {k: v for k, v in json.loads(result.stdout).items() if k not in WALL}
    assert served == printed
    assert got[-1]["log"] == [line for t in ticks for line in t["events"]]
    for name, figures in served["services"].items():  # the ticks add up to the run
        assert sum(t["services"][name]["requests"] for t in ticks) == figures["requests"]
        assert sum(t["services"][name]["errors"] for t in ticks) == figures["errors"]


def test_serving_changes_no_result() -> None:
    plain = Simulation(load_spigo(SHOP), SimConfig(duration=3, seed=9))
    plain.run()
    served = live(duration=3, seed=9)
    with TestClient(sim_app(served)) as client:
        frames(client)
    assert setpiece.sim.report(served.sim) == setpiece.sim.report(plain)


@pytest.mark.timeout(60)
def test_a_page_asks_for_the_fastest_pace() -> None:
    # at one simulated second per wall second this run would take ten minutes
    with TestClient(sim_app(live(duration=600, rate=2, speed=1.0))) as client, \
            client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "graph"
        ws.send_json({"speed": None})
        kinds = []
        while not kinds or kinds[-1] != "summary":
            kinds.append(ws.receive_json()["type"])
        assert kinds.count("tick") == 100


def test_a_bad_speed_is_refused_by_name() -> None:
    with TestClient(sim_app(live(duration=2))) as client:
        with client.websocket_connect("/ws?speed=fast") as ws:
            frame = ws.receive_json()
        assert frame["type"] == "error" and "?speed" in frame["error"]
        with client.websocket_connect("/ws?speed=max") as ws:
            assert ws.receive_json()["type"] == "graph"
            ws.send_json({"speed": -1})
            # at full speed the run may end before the page's message is read: the page is
            # still answered after the summary
            while (frame := ws.receive_json())["type"] in ("tick", "summary"):
                pass
            assert frame["type"] == "error" and "-1" in frame["error"]
    for bad in ("0", "-2", "inf", "nan", "x"):
        with pytest.raises(ConfigError, match="speed"):
            parse_speed(bad)
    assert parse_speed("max") is None and parse_speed("2.5") == 2.5


def test_the_page_and_the_live_maps_cytoscape() -> None:
    with TestClient(sim_app(live(duration=1))) as client:
        page = client.get("/")
        assert page.status_code == 200 and "sim.js" in page.text
        assert "new WebSocket" in client.get("/sim.js").text
        script = client.get("/vendor/cytoscape-3.35.0/cytoscape.min.js")
        frames(client)
    vendored = Path(setpiece.__file__).parent / "observe/static/vendor/cytoscape-3.35.0"
    assert script.content == (vendored / "cytoscape.min.js").read_bytes()


def test_serve_options_are_checked() -> None:
    result = CliRunner().invoke(app, ["sim", SHOP, "--duration", "1", "--port", "8080"])
    assert result.exit_code == 2 and "--serve" in result.output
    result = CliRunner().invoke(app, ["sim", SHOP, "--duration", "1", "--serve",
                                      "--speed", "fast"])
    assert result.exit_code == 2 and "--speed" in result.output
