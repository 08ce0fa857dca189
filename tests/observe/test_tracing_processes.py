"""One trace across worker processes: the trace context travels inside the events, through the
engine (SQLite, or NATS JetStream + PostgreSQL), from one `setpiece run` to another."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from examples.product_orchestration.app import PRODUCT_REGISTERED
from setpiece import Event, Observability, Stack
from tests.conftest import ENGINES, fresh_urls
from tests.processes import LineProcess

ROOT = Path(__file__).resolve().parents[2]
FORM = {"customer_id": "cu-1", "email": "ada@example.com", "serial_number": "SN-1",
        "model": "Kettle K2"}
WANTED = {"process rule.default.start-registration.workflow:register-product",
          "task register-product.AwardPoints", "process promotions.generate",
          "process registration.relay_token", "task register-product.EmailDiscount",
          "process support.open_case"}


@pytest.fixture(params=ENGINES)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "memory":
        return f"sqlite:///{tmp_path / 'traced.db'}", None
    return fresh_urls(request.getfixturevalue("nats"), request.getfixturevalue("postgres"))


def worker(target: str, url: str, store: str | None, spans: Path) -> LineProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "SETPIECE_TEST_SPANS": str(spans)}
    args = [sys.executable, "-m", "setpiece.cli", "run", target, "--engine", url,
            "--heartbeat", "0.2", "--session-timeout", "2", *(["--store", store] if store else [])]
    return LineProcess(args, ROOT, env)


@pytest.mark.timeout(180)
def test_one_trace_across_two_worker_processes(
    urls: tuple[str, str | None], tmp_path: Path, run: Any
) -> None:
    url, store = urls
    spans_file = tmp_path / "spans.jsonl"
    spans_file.touch()
    procs = [worker("tests.observe.traced_app:back", url, store, spans_file),
             worker("tests.observe.traced_app:front", url, store, spans_file)]
    try:
        for proc in procs:
            proc.wait_for("ready")
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        edge = Stack("edge", observe=Observability(tracing=True, tracer_provider=provider))

        async def publish() -> Event:
            async with edge.start(url, store=store) as rt:
                return await rt.publish(Event(type=PRODUCT_REGISTERED, source="shop",
                                              data=FORM, partitionkey="cu-1"))

        sent = run(publish())
        assert sent.traceparent is not None
        trace = sent.traceparent[3:35]
        deadline = time.monotonic() + 120
        while True:
            lines = [json.loads(line) for line in spans_file.read_text().splitlines()]
            chain = [s for s in lines if s["trace"] == trace]
            if {s["name"] for s in chain} >= WANTED:
                break
            assert time.monotonic() < deadline, (sorted(s["name"] for s in chain),
                                                 [p.lines[-5:] for p in procs])
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.close()
    by_name = {s["name"]: s for s in chain}
    start = by_name["process rule.default.start-registration.workflow:register-product"]
    generate = by_name["process promotions.generate"]
    relay = by_name["process registration.relay_token"]
    assert start["parent"] == sent.traceparent[36:52]  # the publish span, in this process
    assert by_name["task register-product.AwardPoints"]["parent"] == start["span"]
    assert by_name["task register-product.EmailDiscount"]["parent"] == start["span"]
    assert by_name["process support.open_case"]["parent"] == start["span"]
    assert generate["parent"] == start["span"] and relay["parent"] == generate["span"]
    # the chain crossed processes: back -> front -> back
    assert start["pid"] == by_name["task register-product.EmailDiscount"]["pid"]
    assert generate["pid"] == relay["pid"] != start["pid"]
