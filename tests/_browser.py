"""Headless Chromium for the browser tests (the live map, ``setpiece sim --serve``).

They drive Debian's chromium through its chromium-driver (``scripts/setup`` installs both) and
fail, never skip, without them. Tests get one from the ``browser`` fixture (tests/conftest.py):
a fresh profile each, quit and removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900"]


def chromium() -> tuple[str, str]:
    """The paths of chromium and chromedriver; the test fails when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: "
                    "run scripts/setup (apt-get install chromium chromium-driver)")
    return browser, driver


@contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a profile of its own, quit (and the profile removed) after."""
    binary, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="setpiece-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=DriverService(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(test: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """What ``test`` returns once it is truthy (asked every 0.1 s); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = test()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
