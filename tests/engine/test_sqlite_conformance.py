"""The conformance suite on the embedded SQLite engine: in memory, and on a file shared by two
instances."""

from __future__ import annotations

from pathlib import Path

import pytest

from setpiece.engine import Engine, open_engine
from setpiece.engine.conformance import EngineSuite


class TestSQLiteMemory(EngineSuite):
    async def make_engine(self) -> Engine:
        return await open_engine("memory")


class TestSQLiteFile(EngineSuite):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "setpiece.db"

    async def make_engine(self) -> Engine:
        return await open_engine(f"sqlite:///{self.path}")

    async def make_peer_engine(self, engine: Engine) -> Engine | None:
        return await open_engine(engine.url)
