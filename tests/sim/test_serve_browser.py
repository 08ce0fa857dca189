"""``setpiece sim --serve`` in a real headless Chromium: the command serves the page on the port
asked for, the page draws the architecture's graph and its counts move as the run plays; a
click plays the rest as fast as possible and shows the summary; Ctrl-C stops the server. Fails,
never skips, without Chromium (``scripts/setup`` installs Debian's chromium and
chromium-driver; the ``browser`` fixture: tests/_browser.py)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from setpiece.sim import Simulation, graph, load_spigo
from tests._browser import wait
from tests.processes import LineProcess
from tests.sim.conftest import ARCHS, ROOT

SHOP = str(ARCHS / "shop_arch.json")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serving(LineProcess):
    """``setpiece sim SHOP --serve --port P`` in a child process; its output, line by line."""

    def __init__(self, port: int) -> None:
        self.port = port
        super().__init__(
            [sys.executable, "-m", "setpiece.cli", "sim", SHOP, "--duration", "30", "--seed",
             "4", "--serve", "--port", str(port)],
            ROOT, {**os.environ, "COLUMNS": "200"})


@pytest.fixture
def served() -> Iterator[Serving]:
    """Requested before ``browser``: the browser quits (closing the page's WebSocket) before
    the server stops."""
    running = Serving(free_port())
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.timeout(120)
def test_the_page_draws_the_run_and_its_counts_move(
    served: Serving, browser: webdriver.Chrome
) -> None:
    url = served.wait_for("serving the run", 30).split(" at ", 1)[1].split()[0]
    assert url == f"http://127.0.0.1:{served.port}/"
    # two simulated seconds per wall second: the 30 s run would play in 15 s
    browser.get(url + "?speed=2")
    nodes = wait(lambda: browser.execute_script(
        "var s = window.setpieceSim; return s && s.cy ? s.cy.nodes().length : 0"), "the graph")
    expected = graph(Simulation(load_spigo(SHOP)))["nodes"]
    assert nodes == len(expected) == 7

    def requests(service: str) -> Any:
        return browser.execute_script(
            "var s = window.setpieceSim; return s.ticks ? "
            f"s.cy.getElementById('{service}').data('requests') : null")

    first = wait(lambda: requests("proxy"), "the first tick with requests at proxy")
    wait(lambda: requests("proxy") != first, "the count of proxy to change")
    label = browser.execute_script(
        "return window.setpieceSim.cy.getElementById('web').data('label')")
    assert "6 up" in label and "/s" in label
    browser.find_element(By.ID, "fastest").click()  # the rest as fast as it can come
    summary = wait(lambda: browser.execute_script("return window.setpieceSim.summary"),
                   "the summary")
    assert summary["instances"] == 24 and summary["simulated_seconds"] == 30
    assert browser.find_element(By.ID, "summary").is_displayed()
    assert "run over" in browser.find_element(By.ID, "status").text
    assert requests("proxy") == summary["services"]["proxy"]["requests"]
    served.wait_for("run over", 30)  # the command says so, and keeps serving
    assert served.proc.poll() is None
    browser.get("about:blank")  # the page leaves; then Ctrl-C stops the server cleanly
    assert served.stop() == 0
