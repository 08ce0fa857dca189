"""The live map in a real headless Chromium: the page loads offline (vendored script), draws the
example's nodes, and its counts change as events flow. Fails, never skips, without Chromium
(``scripts/setup`` installs Debian's chromium and chromium-driver; the ``browser`` fixture:
tests/_browser.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from selenium import webdriver
from selenium.webdriver.common.by import By

from examples.product_orchestration.app import PRODUCT_REGISTERED, build_stack
from setpiece import Event, Observability, Stack
from setpiece.gateway import serving
from tests._browser import wait


def observed_example() -> Stack:
    stack = build_stack()
    return Stack(stack.name, services=list(stack.services.values()),
                 buses=list(stack.buses.values()), workflows=list(stack.workflows.values()),
                 observe=Observability(tracing=True, tracer_provider=TracerProvider()))


class Served:
    """The example with its gateway on a loopback port, in a thread of its own."""

    def __init__(self) -> None:
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self.rt: Any = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete,
                                       args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with observed_example().start("memory") as rt, serving(rt.asgi()) as url:
            self.rt, self.url = rt, url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Served:
        self.thread.start()
        assert self._ready.wait(30), "the gateway did not start"
        return self

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        self.loop.close()


def registered(serial: str) -> Event:
    return Event(type=PRODUCT_REGISTERED, source="shop", partitionkey="cu-1", data={
        "customer_id": "cu-1", "email": "ada@example.com", "serial_number": serial,
        "model": "Kettle K2"})


@pytest.fixture
def served() -> Iterator[Served]:
    """Requested before ``browser``: the browser quits (closing the page's event stream)
    before the server stops."""
    with Served() as running:
        yield running


@pytest.mark.timeout(120)
def test_the_map_draws_the_example_and_its_counts_move(
    served: Served, browser: webdriver.Chrome
) -> None:
    browser.get(f"{served.url}/_setpiece/")
    ids = wait(lambda: browser.execute_script(
        "var m = window.setpieceMap; return m && m.cy && m.stats ? "
        "m.cy.nodes().map(function (n) { return n.id(); }) : null"), "the graph")
    for node in ("bus:default", "workflow:register-product", "service:promotions",
                 "handler:promotions.generate", "handler:registration.relay_token",
                 "handler:support.open_case", "service:loyalty"):
        assert node in ids, ids

    def label(node: str) -> str:
        return str(browser.execute_script(
            f"return window.setpieceMap.cy.getElementById('{node}').data('label')"))

    wait(lambda: "0 done" in label("handler:promotions.generate"), "the first figures")
    served.run(served.rt.publish_many([registered("SN-1"), registered("SN-2")]))
    wait(lambda: "2 done" in label("handler:promotions.generate"),
         "the count of promotions.generate to reach 2")
    wait(lambda: "2 done" in label("handler:support.open_case"),
         "the count of support.open_case to reach 2")
    # a click shows the node's recent deliveries and its last traces
    browser.execute_script(
        "window.setpieceMap.cy.getElementById('handler:promotions.generate').emit('tap')")
    rows = wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#recent tr"),
                "the recent deliveries")
    assert len(rows) == 2 and "discount_requested" in rows[0].text
    bars = wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".waterfall .bar"),
                "a trace waterfall")
    assert any("process promotions.generate" in bar.text for bar in bars)
    shot = os.environ.get("SETPIECE_MAP_SCREENSHOT")  # docs/observe-map.png is made so
    if shot:
        browser.save_screenshot(shot)
