"""``setpiece run --metrics-port``: a worker's metrics over HTTP for Prometheus."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from setpiece import Event
from setpiece.engine import open_engine
from setpiece.event import encode_event
from tests.processes import LineProcess

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.timeout(90)
def test_a_worker_serves_its_metrics_and_lag_falls_to_zero(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = LineProcess([sys.executable, "-m", "setpiece.cli", "run", "tests.observe.apps:shop",
                        "--engine", url, "--metrics-port", str(port), "--heartbeat", "0.2",
                        "--session-timeout", "2"], ROOT, env)
    try:
        proc.wait_for("ready")

        async def append() -> None:
            engine = await open_engine(url)
            try:
                await engine.append("bus.default", [
                    (None, encode_event(Event(type="order_placed", source="t",
                                              data={"id": f"o{i}"}))) for i in range(10)])
            finally:
                await engine.close()

        asyncio.run(append())
        metrics = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        handled: dict[Any, float] = {}
        while True:
            found = scrape(metrics)
            handled = {k: v for k, v in found.items()
                       if k[0] == "setpiece_deliveries_total" and ("consumer", "orders.place")
                       in k[1]}
            lags = [v for k, v in found.items() if k[0] == "setpiece_consumer_lag"]
            if sum(handled.values()) == 10 and lags and not any(lags):
                break
            assert time.monotonic() < deadline, (handled, proc.lines[-5:])
            time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        proc.close()


def test_setpiece_slo_prints_every_workers_counts_from_the_engine(tmp_path: Path) -> None:
    import json

    import httpx
    from typer.testing import CliRunner

    from setpiece.cli.app import app
    from tests.observe.apps import slo_shop

    url = f"sqlite:///{tmp_path / 'shop.db'}"

    async def traffic() -> None:
        async with slo_shop().start(url) as rt:
            await rt.publish_many(Event(type="order_placed", source="t", data={"id": f"o{i}"})
                                  for i in range(10))  # o7 fails twice: 2 bad of 11 attempts
            await rt.drain()
            transport = httpx.ASGITransport(app=rt.asgi())
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                assert (await c.get("/orders/1")).status_code == 200
            await rt.slos()  # flushes this worker's counts to the engine

    asyncio.run(traffic())
    done = CliRunner().invoke(app, ["slo", "tests.observe.apps:slo_shop", "--engine", url,
                                    "--json"])
    assert done.exit_code == 0, done.output
    found = {s["target"]: s for s in json.loads(done.output)}
    assert (found["billing.bill"]["good"], found["billing.bill"]["bad"]) == (9, 2)
    assert found["billing.bill"]["budget_remaining"] == pytest.approx(1 - (2 / 11) / 0.1)
    assert (found["GET /orders/{id}"]["good"], found["GET /orders/{id}"]["bad"]) == (1, 0)
    table = CliRunner().invoke(app, ["slo", "tests.observe.apps:slo_shop", "--engine", url])
    assert table.exit_code == 0 and "billing.bill" in table.output
    missing = CliRunner().invoke(app, ["slo", "tests.observe.apps:shop", "--engine", url])
    assert missing.exit_code == 2 and "declares no SLO" in missing.output


@pytest.mark.timeout(90)
def test_setpiece_top_shows_handlers_from_a_workers_metrics(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from setpiece.cli.app import app

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "COLUMNS": "200"}
    proc = LineProcess([sys.executable, "-m", "setpiece.cli", "run",
                        "tests.observe.apps:slo_shop", "--engine", url, "--metrics-port",
                        str(port), "--heartbeat", "0.2", "--session-timeout", "2"], ROOT, env)
    try:
        proc.wait_for("ready")
        done = CliRunner().invoke(app, [
            "top", "tests.observe.apps:slo_shop", "--engine", url, "--metrics",
            f"http://127.0.0.1:{port}/metrics", "--once", "--interval", "0.2"],
            env={"COLUMNS": "200"})
    finally:
        proc.close()
    assert done.exit_code == 0, done.output
    for text in ("handler orders.place", "handler billing.bill", "rate/s", "p99",
                 "SLO budget", "100.0%"):
        assert text in done.output, done.output
