"""Durable executions under SIGKILL: kill the worker at random moments, restart it, check.

Executions waiting on Wait-state timers, a Map over 100 items, and executions waiting for task
tokens answered by another service all run while the worker is killed again and again. At the
end each execution succeeded with the right output, every task's effect happened exactly once
(though a call may have run again after a kill), and the Map did not start over after each kill.
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
from setpiece.workflows._store import NS, decode_exec

APP = Path(__file__).with_name("crash_app.py")
KILLS = 12
WAITERS, ITEMS, ASKERS = 12, 100, 4


def _worker(db: Path, log: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path("src").resolve()),
                                                        str(Path(".").resolve()), *sys.path])}
    return subprocess.Popen([sys.executable, str(APP), str(db), str(log), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


async def _running(db: Path) -> int:
    engine = await open_engine(f"sqlite:///{db}")
    try:
        return len(await engine.kv_scan(NS, "s:RUNNING:", 10_000))
    finally:
        await engine.close()


async def _check(db: Path) -> None:
    engine = await open_engine(f"sqlite:///{db}")
    try:
        executions = {k[2:]: decode_exec(v) for k, v in await engine.kv_scan(NS, "x:", 10_000)}
        assert len(executions) == WAITERS + 1 + ASKERS
        assert {x.status for x in executions.values()} == {"SUCCEEDED"}
        for i in range(WAITERS):
            assert executions[f"waiter:w{i}"].output["result"] == {"recorded": f"w{i}"}
        assert executions["mapper:m"].output == [2 * i for i in range(ITEMS)]
        for i in range(ASKERS):
            assert executions[f"asker:o{i}"].output["quote"] == {"price": 10 * (i + 1)}

        ledger = {k: msgspec.json.decode(v) for k, v in await engine.kv_scan("svc:ledger")}
        assert ledger == {**{f"waiter:w{i}": 1 for i in range(WAITERS)},
                          **{f"item:{i}": 1 for i in range(ITEMS)}}
        quotes = {k: msgspec.json.decode(v) for k, v in await engine.kv_scan("svc:quotes")}
        assert quotes == {f"quote:o{i}": 1 for i in range(ASKERS)}
        recorded = 0
        for partition, end in enumerate(await engine.end_offsets("bus.default")):
            for record in await engine.read("bus.default", partition, 0, end + 1):
                recorded += msgspec.json.decode(record.value)["type"] == "recorded"
        assert recorded == WAITERS  # events emitted by tasks: once each
        assert await engine.end_offsets("setpiece.deadletters") == [0]
        assert await engine.kv_scan(NS, "th:") == []  # no thread left behind
        assert await engine.kv_scan(NS, "s:RUNNING:") == []
    finally:
        await engine.close()


def _check_calls(log: Path) -> None:
    tallies = log.read_text().split().count("tally")
    # Calls are at least once; a kill loses at most the uncommitted batch in flight, so the
    # Map resumed where it was instead of starting over.
    assert ITEMS <= tallies < ITEMS + 25 * KILLS, tallies


@pytest.mark.timeout(600)  # subprocesses killed and restarted many times; slow on a busy machine
@pytest.mark.slow
def test_sigkill_at_random_moments_durable_executions_finish_exactly_once(
    tmp_path: Path,
) -> None:
    db, log = tmp_path / "flows.db", tmp_path / "calls.log"
    init = _worker(db, log, "init")
    assert init.wait(timeout=60) == 0
    assert init.stdout is not None
    init.stdout.close()
    rng = random.Random(20261122)
    killed_mid_flight = 0
    for _ in range(KILLS):
        proc = _worker(db, log, "run")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        killed_mid_flight += asyncio.run(_running(db)) > 0
    assert killed_mid_flight >= KILLS // 2, "the kills must interrupt real work"
    final = _worker(db, log, "finish")
    assert final.wait(timeout=180) == 0
    assert final.stdout is not None
    final.stdout.close()
    asyncio.run(_check(db))
    _check_calls(log)
