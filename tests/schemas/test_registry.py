"""The registry in the engine: shared by workers, refusing incompatible versions with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from setpiece import Stack
from setpiece.engine import open_engine
from setpiece.engine.contract import KVWrite, UnitOfWork
from setpiece.errors import EngineError, SchemaError
from setpiece.schemas import Schema
from setpiece.schemas._registry import NAMESPACE, SchemaRegistry
from tests.conftest import ENGINES

Run = Callable[[Any], Any]
Urls = tuple[str, str | None]
on_every_engine = pytest.mark.parametrize("engine_urls", ENGINES, indirect=True)

V1 = {"type": "object", "properties": {"id": {"type": "string"}}}
V2_OK = {"type": "object", "properties": {"id": {"type": "string"}, "note": {}}}
V2_BREAKS = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}


@on_every_engine
def test_registering_checks_against_what_is_registered(run: Run, engine_urls: Urls) -> None:
    url, store = engine_urls

    async def main() -> None:
        engine = await open_engine(url, store=store)
        try:
            registry = SchemaRegistry(engine)
            assert await registry.register("t", 1, V1, "BACKWARD") is True
            assert await registry.register("t", 1, V1, "BACKWARD") is False  # already there
            with pytest.raises(SchemaError) as info:
                await registry.register("t", 2, V2_BREAKS, "BACKWARD")
            assert (info.value.path, info.value.rule) == ("$.id", "REQUIRED_ATTRIBUTE_ADDED")
            assert "not BACKWARD compatible with registered version 1" in str(info.value)
            assert await registry.register("t", 2, V2_OK, "BACKWARD") is True
            with pytest.raises(SchemaError, match="registered with another document"):
                await registry.register("t", 2, V1, "BACKWARD")
            assert [r.version for r in await registry.versions("t")] == [1, 2]
            assert await registry.types() == ["t"]
        finally:
            await engine.close()

    run(main())


def test_workers_share_the_registry_and_a_breaking_deploy_does_not_start(
        run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"

    async def main() -> None:
        async with Stack("shop", schemas=[Schema("t", V1)]).start(url):
            pass
        # another worker (a later deploy) declares only a breaking version 2
        later = Stack("shop", schemas=[Schema("t", V2_BREAKS, version=2)])
        with pytest.raises(SchemaError, match=r"\$\.id: required attribute added"):
            async with later.start(url):
                pass
        async with Stack("shop", schemas=[Schema("t", V2_OK, version=2)]).start(url) as rt:
            versions = await rt.extension("schemas").registry.versions("t")
            assert [r.version for r in versions] == [1, 2]

    run(main())


def test_racing_workers_both_register_and_the_row_keeps_both(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"

    async def main() -> None:
        a, b = await open_engine(url), await open_engine(url)
        try:
            await asyncio.gather(
                SchemaRegistry(a).register("t", 1, V1, "BACKWARD"),
                SchemaRegistry(b).register("u", 1, V1, "BACKWARD"),
                SchemaRegistry(b).register("t", 1, V1, "BACKWARD"),
            )
            assert [r.version for r in await SchemaRegistry(a).versions("t")] == [1]
            assert await SchemaRegistry(b).types() == ["t", "u"]
        finally:
            await a.close()
            await b.close()

    run(main())


def test_a_row_written_by_a_newer_setpiece_is_a_clear_error(run: Run) -> None:
    async def main() -> None:
        engine = await open_engine("memory")
        try:
            row = msgspec.json.encode({"format": 2, "subjects": []})
            await engine.commit(UnitOfWork(writes=[KVWrite(NAMESPACE, "t", row)]))
            with pytest.raises(EngineError, match=r"written by a newer setpiece \(row format 2; "
                                                  r"this setpiece reads format 1\)"):
                await SchemaRegistry(engine).versions("t")
            await engine.commit(UnitOfWork(writes=[KVWrite(NAMESPACE, "t", b"{oops")]))
            with pytest.raises(EngineError, match="not a setpiece schema row"):
                await SchemaRegistry(engine).register("t", 1, V1, "BACKWARD")
        finally:
            await engine.close()

    run(main())
