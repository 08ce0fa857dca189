"""A service's store read from outside a delivery: ``rt.store(service, tenant=...)``."""

from __future__ import annotations

from typing import Any

import msgspec

from setpiece.context import check_key
from setpiece.engine.contract import Engine

__all__ = ["StoreReader"]


class StoreReader:
    """A service's store read from outside a delivery (tests, tools). Reads committed state."""

    def __init__(self, engine: Engine, namespace: str) -> None:
        self._engine = engine
        self.namespace = namespace

    async def get(self, key: str, default: Any = None) -> Any:
        found = await self._engine.kv_get(self.namespace, [check_key(key)])
        return msgspec.json.decode(found[key][0]) if key in found else default

    async def items(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, Any]]:
        rows = await self._engine.kv_scan(self.namespace, prefix, limit)
        return [(k, msgspec.json.decode(v)) for k, v in rows]
