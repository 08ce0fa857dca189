"""SLOs: the error budget and the multi-window, multi-burn-rate alerts of the SRE workbook,
driven by failures on a virtual clock; a burning budget publishes setpiece.slo.burning."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece import SLO, ConfigError, Event, Observability, RetryPolicy, Service, Stack
from setpiece.clock import VirtualClock
from setpiece.observe._slo import ALERTS, MINUTE, evaluate

Run = Any
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def shop(burning: list[Event]) -> Stack:
    orders = Service("orders")

    @orders.on({"type": ["order_placed"]}, retry=RetryPolicy(max_attempts=1))
    async def place(event: Event) -> None:
        if event.data["fail"]:
            raise RuntimeError("out of stock")

    oncall = Service("oncall")

    @oncall.on({"type": ["setpiece.slo.burning"]})
    async def page(event: Event) -> None:
        burning.append(event)

    slos = {"orders.place": SLO(objective=0.99, window=28 * 86400)}
    return Stack("shop", services=[orders, oncall],
                 observe=Observability(metrics=False, slos=slos, slo_interval=60))


def orders(good: int, bad: int) -> list[Event]:
    return [Event(type="order_placed", source="t", data={"fail": i < bad})
            for i in range(good + bad)]


def test_budget_and_burn_rate_alerts_move_as_the_workbook_says(run: Run) -> None:
    burning: list[Event] = []
    clock = VirtualClock(T0)

    async def main() -> None:
        async with shop(burning).start("memory", clock=clock) as rt:
            await rt.publish_many(orders(good=90, bad=10))
            await rt.drain()
            [status] = await rt.slos()
            # 10 bad of 100: an error rate of 0.1 against a budget of 0.01 -> burn rate 10
            assert (status.good, status.bad) == (90, 10)
            assert status.budget_remaining == pytest.approx(1 - 0.1 / 0.01)
            assert status.burn_rates["5m"] == pytest.approx(10)
            assert status.burn_rates["1h"] == pytest.approx(10)
            # 10 < 14.4: no fast page; >= 6, 3 and 1: the slower alerts fire
            assert status.firing == ("page 6x 6h/30m", "ticket 3x 1d/2h", "ticket 1x 3d/6h")
            assert burning == []
            await clock.advance(60)  # the worker's check: the alerts start firing
            await rt.drain()
            assert len(burning) == 1
            assert burning[0].subject == "orders.place"
            assert sorted(burning[0].data["started"]) == sorted(status.firing)
            # 35 minutes of good traffic later: the 30 min window is clean, the 6 h one not
            await clock.advance(35 * 60)
            await rt.publish_many(orders(good=1000, bad=0))
            await rt.drain()
            [later] = await rt.slos()
            assert later.burn_rates["30m"] == 0
            assert later.burn_rates["6h"] == pytest.approx((10 / 1100) / 0.01)
            assert later.budget_remaining == pytest.approx(1 - (10 / 1100) / 0.01)
            assert later.firing == ()
            # ten minutes later, a fast burn: only errors -> 14.4x over 1 h and 5 min pages
            await clock.advance(10 * 60)
            await rt.publish_many(orders(good=0, bad=400))
            await rt.drain()
            [fast] = await rt.slos()
            assert fast.burn_rates["5m"] == pytest.approx(100)
            assert fast.burn_rates["1h"] == pytest.approx((410 / 1500) / 0.01)
            assert "page 14.4x 1h/5m" in fast.firing
            await clock.advance(60)
            await rt.drain()
            assert len(burning) == 2
            assert "page 14.4x 1h/5m" in burning[1].data["started"]

    run(main())


def test_the_arithmetic_from_buckets() -> None:
    slo = SLO(objective=0.999, latency=0.25)
    now = T0 + 10 * 3600
    minutes = {int(now // MINUTE) * MINUTE: (980, 20)}  # 2% errors in the last minute
    hours = {int(now // 3600) * 3600: (980, 20), int(now // 3600) * 3600 - 5 * 3600: (10_000, 0)}
    status = evaluate("x", slo, minutes, hours, now)
    assert status.burn_rates["5m"] == pytest.approx(20)
    assert status.budget_remaining == pytest.approx(1 - (20 / 11_000) / 0.001)
    assert [a.factor for a in ALERTS] == [14.4, 6, 3, 1]
    assert "page 14.4x 1h/5m" in status.firing


def test_slos_are_checked_when_declared() -> None:
    with pytest.raises(ConfigError, match="objective"):
        SLO(objective=1.0)
    with pytest.raises(ConfigError, match="latency"):
        SLO(latency=0)
    with pytest.raises(ConfigError, match="window"):
        SLO(window=60)


def test_an_slo_must_name_a_handler_or_route(run: Run) -> None:
    stack = Stack("s", observe=Observability(slos={"nope.handler": SLO()}))

    async def main() -> None:
        with pytest.raises(ConfigError, match=r"'nope\.handler' is no handler or route"):
            async with stack.start("memory"):
                pass

    run(main())
