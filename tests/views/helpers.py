"""Shared helpers of the views tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from setpiece import Event
from setpiece.engine import Engine


def at(seconds: float) -> str:
    """ISO-8601 UTC (milliseconds) for ``seconds`` after 2026-01-01T00:00:00Z."""
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ev(key: str, t: float, **data: Any) -> Event:
    return Event(type="tick", source="test", partitionkey=key, time=at(t), data=data)


async def read_all(engine: Engine, stream: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for partition, end in enumerate(await engine.end_offsets(stream)):
        offset = 0
        while offset < end:
            batch = await engine.read(stream, partition, offset, 1000)
            out += [msgspec.json.decode(r.value) for r in batch]
            offset = batch[-1].offset + 1
    return out
