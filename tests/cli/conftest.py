"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import LineProcess


@pytest.fixture
def procs() -> Iterator[list[LineProcess]]:
    """Child processes a test starts: killed at the end if still running."""
    started: list[LineProcess] = []
    yield started
    for p in started:
        p.close()
