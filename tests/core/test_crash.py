"""Exactly-once effects under SIGKILL: kill a worker at random moments, restart it, check.

A backlog of events flows through two hops (a handler that counts per customer and emits, and a
handler that counts per item). The worker is killed many times mid-flight. At the end every
customer's count is exactly its number of events, every item was tallied exactly once, and the
bus holds exactly one emitted event per input: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from setpiece.engine import open_engine
from setpiece.event import Event, encode_event

APP = Path(__file__).with_name("crash_app.py")
ITEMS = 12_000
CUSTOMERS = 17
KILLS = 15


def _worker(db: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path("src").resolve()), *sys.path])}
    return subprocess.Popen([sys.executable, str(APP), str(db), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


async def _publish_backlog(db: Path) -> None:
    engine = await open_engine(f"sqlite:///{db}")
    try:
        records = [
            (f"cu-{i % CUSTOMERS}",
             encode_event(Event(type="work", source="test", partitionkey=f"cu-{i % CUSTOMERS}",
                                data={"item": i, "customer": f"cu-{i % CUSTOMERS}"})))
            for i in range(ITEMS)
        ]
        for start in range(0, ITEMS, 500):
            await engine.append("bus.default", records[start : start + 500])
    finally:
        await engine.close()


async def _pending(db: Path) -> int:
    """Input events not yet counted (the counter group's lag on the bus)."""
    engine = await open_engine(f"sqlite:///{db}")
    try:
        counted = sum(msgspec.json.decode(v) for _, v in await engine.kv_scan("svc:counter"))
        return ITEMS - counted
    finally:
        await engine.close()


async def _check(db: Path) -> None:
    engine = await open_engine(f"sqlite:///{db}")
    try:
        counts = dict(await engine.kv_scan("svc:counter", "", 10_000))
        per_customer = {k: msgspec.json.decode(v) for k, v in counts.items()}
        expected = {f"cu-{c}": len(range(c, ITEMS, CUSTOMERS)) for c in range(CUSTOMERS)}
        assert per_customer == expected
        tallies = dict(await engine.kv_scan("svc:tally", "item:", 100_000))
        assert len(tallies) == ITEMS
        assert {msgspec.json.decode(v) for v in tallies.values()} == {1}
        done = 0
        for partition, end in enumerate(await engine.end_offsets("bus.default")):
            for record in await engine.read("bus.default", partition, 0, end + 1):
                done += msgspec.json.decode(record.value)["type"] == "done"
        assert done == ITEMS
        assert await engine.end_offsets("setpiece.deadletters") == [0]
    finally:
        await engine.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    init = _worker(db, "init")
    assert init.wait(timeout=60) == 0
    assert init.stdout is not None
    init.stdout.close()
    asyncio.run(_publish_backlog(db))
    rng = random.Random(20261122)
    killed_mid_flight = 0
    for _ in range(KILLS):
        proc = _worker(db, "run")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        killed_mid_flight += asyncio.run(_pending(db)) > 0
    assert killed_mid_flight >= KILLS // 2, "the kills must interrupt real work"
    final = _worker(db, "drain")
    assert final.wait(timeout=180) == 0
    assert final.stdout is not None
    final.stdout.close()
    asyncio.run(_check(db))
