"""The conformance suite on the production engine: NATS JetStream + PostgreSQL, real servers."""

from __future__ import annotations

import pytest

from setpiece.engine import Engine, open_engine
from setpiece.engine.conformance import EngineSuite
from setpiece.engine.nats import NatsEngine
from setpiece.engine.servers import NatsServer, PostgresServer
from tests.engine.conftest import fresh_urls


@pytest.mark.servers
class TestNatsPostgres(EngineSuite):
    @pytest.fixture(autouse=True)
    def _servers(self, nats: NatsServer, postgres: PostgresServer) -> None:
        self.servers = (nats, postgres)

    async def make_engine(self) -> Engine:
        url, store = fresh_urls(*self.servers)
        return await open_engine(url, store=store)

    async def make_peer_engine(self, engine: Engine) -> Engine | None:
        assert isinstance(engine, NatsEngine)
        return await open_engine(engine.url, store=engine.store_url)
