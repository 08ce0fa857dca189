"""Views exactly once under SIGKILL: a table, a stream-table join and a windowed aggregate
work through a durable backlog while their worker is killed at random moments, many times.

At the end the table equals a fold of its log, every order was enriched exactly once, every
closed window's final result was emitted exactly once with the right value (computed here from
the log), and nothing was dead-lettered. Reuses the core crash test's worker harness.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from setpiece.engine import Engine
from setpiece.engine.servers import nats_server, postgres_server
from setpiece.event import Event, encode_event
from tests.core.test_crash import Target, _drain, _init
from tests.views.helpers import at

APP = Path(__file__).with_name("crash_app.py")
CUSTOMERS = 13


def _backlog(target: Target, orders: int, profiles: int) -> None:
    async def publish(engine: Engine) -> None:
        rows = []
        for i in range(profiles):
            key = f"cu-{(i * 7) % CUSTOMERS}"
            rows.append((key, encode_event(Event(type="profile", source="test",
                                                 partitionkey=key, data={"v": i}))))
        for start in range(0, len(rows), 500):
            await engine.append("profiles", rows[start:start + 500])
        rows = []
        for i in range(orders):
            key = f"cu-{i % CUSTOMERS}"
            rows.append((key, encode_event(Event(
                type="order", source="test", partitionkey=key, time=at(i * 0.05),
                data={"order": i, "amount": i % 10}))))
        for start in range(0, len(rows), 500):
            await engine.append("orders", rows[start:start + 500])

    target.call(publish)


async def _log(engine: Engine, stream: str) -> list[list[dict[str, Any]]]:
    out = []
    for partition, end in enumerate(await engine.end_offsets(stream)):
        records: list[dict[str, Any]] = []
        offset = 0
        while offset < end:
            batch = await engine.read(stream, partition, offset, 1000)
            records += [msgspec.json.decode(r.value) for r in batch]
            offset = batch[-1].offset + 1
        out.append(records)
    return out


def _unfinished(target: Target) -> bool:
    async def behind(engine: Engine) -> bool:
        groups = [g for g, s in await engine.groups() if g.startswith("view.")]
        for group, stream in await engine.groups():
            if group in groups:
                ends = await engine.end_offsets(stream)
                committed = await engine.committed(group, stream)
                if any(committed[p] < end for p, end in enumerate(ends)):
                    return True
        return False

    return bool(target.call(behind))


async def _relayed(engine: Engine, streams: list[str], quiet: float = 4.0) -> None:
    """Wait until the streams' ends stop moving for ``quiet`` seconds (at most a minute).

    On NATS a worker killed after its commit leaves its emitted records in the PostgreSQL
    outbox; the next engine's relay publishes them once they are two seconds old (the
    guarantee is that they are published, not when). Read the log after that."""
    last: list[list[int]] | None = None
    since = time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        ends = [await engine.end_offsets(s) for s in streams]
        if ends != last:
            last, since = ends, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.25)


def _check(target: Target, orders: int) -> None:
    async def check(engine: Engine) -> None:
        from setpiece.views._state import Layout

        await _relayed(engine, ["enriched", "totals"])
        from tests.views.crash_app import build

        stack = build()
        # The table equals a fold of its log (last value per key, partition by partition).
        expected_rows: dict[str, Any] = {}
        for records in await _log(engine, "profiles"):
            for record in records:
                expected_rows[record["partitionkey"]] = record["data"]
        layout = Layout(stack.views["profile_table"])  # type: ignore[arg-type]
        rows = {k: msgspec.json.decode(v)[0] for k, v in await engine.kv_scan(
            layout.state, "", 1_000_000)}
        assert rows == expected_rows
        # Every order enriched exactly once.
        enriched = [r for part in await _log(engine, "enriched") for r in part]
        assert sorted(r["data"]["event"]["order"] for r in enriched) == list(range(orders))
        # Every closed window's final result exactly once, with the right value.
        windows: dict[tuple[str, int], list[int]] = {}
        closed: set[tuple[str, int]] = set()
        for records in await _log(engine, "orders"):
            last = 0
            for record in records:
                t = round(_seconds(record["time"]) * 1000)
                start = t - t % 10_000
                acc = windows.setdefault((record["partitionkey"], start), [0, 0])
                acc[0] += 1
                acc[1] += record["data"]["amount"]
                last = max(last, t)
            for record in records:
                t = round(_seconds(record["time"]) * 1000)
                if t - t % 10_000 + 10_000 <= last:
                    closed.add((record["partitionkey"], t - t % 10_000))
        finals = [r for part in await _log(engine, "totals") for r in part]
        seen = Counter((f["data"]["key"], f["data"]["start"]) for f in finals)
        assert all(n == 1 for n in seen.values()), [k for k, n in seen.items() if n > 1]
        got = {(f["data"]["key"], f["data"]["start"]): f["data"]["value"] for f in finals}
        want = {(key, _iso(start)): windows[(key, start)] for key, start in closed}
        assert got == want
        assert await engine.end_offsets("setpiece.deadletters") == [0]

    target.call(check)


def _seconds(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(ms: int) -> str:
    from setpiece.views._state import iso

    return iso(ms)


def _kill_loop(target: Target, kills: int, seed: int) -> int:
    rng = random.Random(seed)
    mid_flight = 0
    for _ in range(kills):
        proc = target.worker("run")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        mid_flight += _unfinished(target)
    return mid_flight


def _run(target: Target, kills: int, seed: int, orders: int) -> None:
    _init(target)
    _backlog(target, orders, profiles=orders // 3)
    mid_flight = _kill_loop(target, kills, seed)
    assert mid_flight >= kills // 2, "the kills must interrupt real work"
    _drain(target)
    _check(target, orders)


@pytest.mark.timeout(600)  # subprocesses killed and restarted many times; slow on a busy machine
@pytest.mark.slow
def test_views_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    target = Target(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}", app=APP)
    _run(target, kills=10, seed=20261203, orders=60_000)


@pytest.mark.timeout(600)
@pytest.mark.slow
@pytest.mark.servers
def test_views_survive_sigkill_on_nats_and_postgres(tmp_path: Path) -> None:
    with nats_server() as nats, postgres_server() as pg:
        target = Target(tmp_path, f"{nats.url}?prefix=vcrash&timeout=60",
                        f"{pg.url}?schema=vcrash", app=APP)
        _run(target, kills=8, seed=20261204, orders=20_000)
