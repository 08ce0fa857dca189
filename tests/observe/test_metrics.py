"""Metrics: counted per delivery, rendered as Prometheus text, served at /metrics."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from setpiece import ConfigError, Event, Observability, Service, Stack
from tests.gateway.conftest import auth, bearer, client, notes_service, token
from tests.observe.apps import shop

Run = Any


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_counters_equal_the_deliveries_made_and_lag_falls_to_zero(run: Run) -> None:
    stack = shop(observe=Observability())
    n = 20

    async def main() -> str:
        async with stack.start("memory") as rt:
            await rt.publish_many(
                Event(type="order_placed", source="test", partitionkey=f"k{i % 3}",
                      data={"id": f"o{i}"}) for i in range(n))
            await rt.drain()
            return await rt.metrics()

    found = samples(run(main()))
    failing = 2  # o7 and o17: two attempts each, then a dead letter
    assert value(found, "setpiece_deliveries_total", consumer="orders.place",
                 kind="handler") == n
    assert value(found, "setpiece_delivery_failures_total", consumer="orders.place",
                 kind="handler") == 0
    assert value(found, "setpiece_deliveries_total", consumer="billing.bill",
                 kind="handler") == n + failing
    assert value(found, "setpiece_delivery_failures_total", consumer="billing.bill",
                 kind="handler") == 2 * failing
    assert value(found, "setpiece_delivery_retries_total", consumer="billing.bill",
                 kind="handler") == failing
    assert value(found, "setpiece_dead_letters_total", consumer="billing.bill",
                 kind="handler") == failing
    assert value(found, "setpiece_delivery_duration_seconds_count", consumer="billing.bill",
                 kind="handler") == n + failing
    group = "rule.default.keep.stream:archive"
    assert value(found, "setpiece_deliveries_total", consumer=group, kind="rule") == n
    assert value(found, "setpiece_rule_matches_total", bus="default", rule="keep") == n
    assert value(found, "setpiece_rule_matches_total", bus="default",
                 rule="billing.bill") == n
    assert value(found, "setpiece_events_published_total", stream="bus.default") == n
    lags = {labels: v for (name, labels), v in found.items() if name == "setpiece_consumer_lag"}
    groups = {dict(labels)["group"] for labels in lags}
    assert groups == {"orders.place", "billing.bill", group}
    assert set(lags.values()) == {0}


def test_lag_counts_what_is_not_yet_handled(run: Run) -> None:
    stack = shop(observe=Observability())

    async def main() -> str:
        async with stack.start("memory") as rt:
            for consumer in rt.consumers:  # nothing is handled
                consumer.stop()
            await rt.publish_many(Event(type="order_placed", source="test",
                                        partitionkey="k", data={"id": f"o{i}"})
                                  for i in range(5))
            return await rt.metrics()

    lags = [v for (name, labels), v in samples(run(main())).items()
            if name == "setpiece_consumer_lag" and ("group", "orders.place") in labels]
    assert sum(lags) == 5


def test_gateway_serves_metrics_to_the_observe_scope_and_counts_routes(run: Run) -> None:
    stack = Stack("app", services=[notes_service()], auth=auth(),
                  observe=Observability())

    async def main() -> None:
        async with stack.start("memory") as rt, client(rt.asgi()) as c:
            h = bearer(token())
            assert (await c.put("/notes/a", json={"text": "hi"}, headers=h)).status_code == 200
            assert (await c.get("/notes/a", headers=h)).status_code == 200
            assert (await c.get("/notes/zz", headers=h)).status_code == 404
            assert (await c.get("/metrics")).status_code == 401
            assert (await c.get("/metrics", headers=h)).status_code == 403
            reply = await c.get("/metrics", headers=bearer(token(["setpiece:observe"])))
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
            found = samples(reply.text)
            route = {"method": "GET", "route": "/notes/{name}", "version": "1"}
            assert value(found, "setpiece_http_requests_total", status="200", **route) == 1
            assert value(found, "setpiece_http_requests_total", status="404", **route) == 1
            assert value(found, "setpiece_http_request_duration_seconds_count", **route) == 2
            assert value(found, "setpiece_http_requests_total", method="PUT",
                         route="/notes/{name}", version="1", status="200") == 1
            assert value(found, "setpiece_breaker_state", service="notes",
                         instance=next(k for (n, labels), _ in found.items()
                                       if n == "setpiece_breaker_state"
                                       for key, k in labels if key == "instance")) == 0

    run(main())


def test_metrics_without_observability_is_a_clear_error(run: Run) -> None:
    async def main() -> None:
        async with shop().start("memory") as rt:
            with pytest.raises(ConfigError, match="does not observe"):
                await rt.metrics()

    run(main())


def test_services_cannot_take_the_observability_paths() -> None:
    for path in ("/metrics", "/_setpiece/map"):
        svc = Service("s")

        @svc.get(path)
        async def read() -> dict[str, str]:
            return {}

        with pytest.raises(ConfigError, match="reserved by the gateway"):
            Stack("app", services=[svc])


def test_observability_off_imports_nothing_of_otel_or_prometheus() -> None:
    code = textwrap.dedent("""
        import asyncio, sys
        from tests.observe.apps import shop
        from setpiece import Event

        async def main():
            async with shop().start("memory") as rt:
                await rt.publish(Event(type="order_placed", source="t", data={"id": "o1"}))
                await rt.drain()
                await rt.asgi()({"type": "http", "method": "GET", "path": "/healthz",
                                 "headers": []}, None, _send)

        async def _send(message):
            pass

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("opentelemetry", "prometheus_client"))
        print(loaded)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_observability_is_checked_when_declared() -> None:
    with pytest.raises(ConfigError, match="need tracing=True"):
        Observability(otlp="http://collector:4318")
    with pytest.raises(ConfigError, match="not an http"):
        Observability(tracing=True, otlp="collector:4318")
    with pytest.raises(ConfigError, match="observe: expected"):
        Stack("s", observe=True)  # type: ignore[arg-type]


def test_workflow_executions_are_counted_by_final_status(run: Run) -> None:
    from examples.product_orchestration.app import build_stack

    example = build_stack()
    stack = Stack(example.name, services=list(example.services.values()),
                  buses=list(example.buses.values()),
                  workflows=list(example.workflows.values()), observe=Observability())

    async def main() -> str:
        async with stack.start("memory") as rt:
            for serial in ("SN-1", "SN-2"):
                await rt.publish(Event(type="product_registered", source="shop", data={
                    "customer_id": "cu-1", "email": "a@example.com",
                    "serial_number": serial, "model": "Kettle"}))
            await rt.drain()
            for ex in await rt.executions():
                await rt.wait_execution(ex.id, timeout=30)
            return await rt.metrics()

    found = samples(run(main()))
    assert value(found, "setpiece_workflow_executions_ended_total",
                 workflow="register-product", status="SUCCEEDED") == 2
