"""The conformance suite on the production engine: NATS JetStream + PostgreSQL, real servers."""

from __future__ import annotations

import pytest

from setpiece.engine import Engine, StreamSpec, UnitOfWork, open_engine
from setpiece.engine.conformance import EngineSuite, engine_test
from setpiece.engine.nats import NatsEngine
from setpiece.engine.servers import NatsCluster, NatsServer, PostgresServer
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


@pytest.mark.servers
class TestNatsPostgresWithoutPrivateSeams(TestNatsPostgres):
    """The same suite with every private nats-py attribute the engine uses for speed hidden
    (``setpiece.engine.nats.client.seam`` answers None), as on a nats-py that dropped them: the
    engine falls back on nats-py's public API and still passes."""

    @pytest.fixture(autouse=True)
    def _no_seams(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from setpiece.engine.nats import client

        seen: list[str] = []

        def hidden(obj: object, name: str) -> None:
            seen.append(name)
            return None

        monkeypatch.setattr(client, "seam", hidden)
        self.seams_asked = seen

    @engine_test
    async def test_the_fallbacks_ran(self, engine: Engine) -> None:
        await engine.create_stream(StreamSpec("s", 1))
        await engine.commit(UnitOfWork(appends=[("s", "k", b"v")]))
        [record] = await engine.read("s", 0, 0, 10)
        assert (record.key, record.value) == ("k", b"v")
        asked = set(self.seams_asked)
        assert {"_process_headers", "_process_msg", "_send_command"} <= asked, asked


@pytest.mark.servers
class TestNatsClusterPostgres(TestNatsPostgres):
    """The same suite on a 3-node JetStream cluster whose streams keep 3 replicas; the client
    is given every node as a seed."""

    @pytest.fixture(autouse=True)
    def _servers(self, nats_cluster: NatsCluster, postgres: PostgresServer) -> None:
        self.servers = (nats_cluster, postgres)  # type: ignore[assignment]
