"""Event-sourced commands under SIGKILL: two workers command a few hot aggregates at once (their
appends race between processes) and are killed at random moments, again and again.

At the end every aggregate's versions run 1..n with no gap and no duplicate, each event's
``aggregateversion`` is its version, its state (as loaded, from a snapshot) equals a fold of its
events, every requested deposit is in exactly one aggregate exactly once, and the bus carries
each stored event exactly once (published in the same transaction).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from setpiece import Stack
from setpiece.engine import Engine
from setpiece.engine.servers import NatsServer, PostgresServer
from setpiece.event import Event, decode_event, encode_event
from tests.conftest import fresh_urls
from tests.core.test_crash import Target
from tests.sourcing import crash_app

APP = Path(__file__).with_name("crash_app.py")
HOT = 3  # aggregates every command goes to
KEYS = 16  # partition keys the requests are spread over


class SourcingTarget(Target):
    """The crash test's target, running this directory's crash_app.py."""

    def worker(self, mode: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONFAULTHANDLER": "1",
               "PYTHONPATH": os.pathsep.join([str(Path("src").resolve()), *sys.path])}
        args = [sys.executable, str(APP), self.url, mode, *([self.store] if self.store else [])]
        self.started += 1
        with self.log(mode).open("wb") as err:
            return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=err)


def _start(target: SourcingTarget, mode: str) -> subprocess.Popen[bytes]:
    proc = target.worker(mode)
    assert proc.stdout is not None
    if mode == "run":
        assert proc.stdout.readline().strip() == b"ready"
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()


def _stored(target: SourcingTarget) -> int:
    async def count(engine: Engine) -> int:
        return sum(v for _, v in await engine.event_sequences("agg:account"))

    result = target.call(count)
    assert isinstance(result, int)
    return result


def _publish(target: SourcingTarget, items: int) -> None:
    async def publish(engine: Engine) -> None:
        records = [
            (f"k{i % KEYS}", encode_event(Event(
                type="deposit_requested", source="test", partitionkey=f"k{i % KEYS}",
                data={"item": i, "account": f"hot-{i % HOT}", "amount": i + 1})))
            for i in range(items)
        ]
        for start in range(0, items, 500):
            await engine.append("bus.default", records[start : start + 500])

    target.call(publish)


def _check(target: SourcingTarget, items: int) -> None:
    async def check(engine: Engine) -> None:
        sequences = dict(await engine.event_sequences("agg:account"))
        assert sorted(sequences) == [f"hot-{h}" for h in range(HOT)]
        seen: list[int] = []
        stored_ids: set[str] = set()
        async with Stack("crash", aggregates=[crash_app.account()]).start(
            engine.url, store=target.store
        ) as rt:
            for id_, version in sequences.items():
                rows = await engine.read_events("agg:account", id_)
                assert [v for v, _ in rows] == list(range(1, version + 1)), id_  # no gap/dup
                events = [decode_event(raw) for _, raw in rows]
                assert [e.extensions["aggregateversion"] for e in events] == [  # type: ignore[index]
                    v for v, _ in rows]
                state = {"balance": 0, "count": 0}
                for event in events:
                    state = crash_app.evolve(state, event)
                assert await rt.aggregate("account", id_).load() == (state, version)
                seen += [e.data["item"] for e in events]
                stored_ids.update(e.id for e in events)
        assert sorted(seen) == list(range(items)), "every deposit exactly once"
        published: list[str] = []
        for partition, end in enumerate(await engine.end_offsets("bus.default")):
            offset = 0
            while offset < end:
                batch = await engine.read("bus.default", partition, offset, 1000)
                assert batch
                published += [e.id for e in map(decode_event, (r.value for r in batch))
                              if e.type == "deposited"]
                offset = batch[-1].offset + 1
        assert sorted(published) == sorted(stored_ids), "each stored event published once"
        assert await engine.end_offsets("setpiece.deadletters") == [0]

    target.call(check)


def _kill_loop(target: SourcingTarget, items: int, kills: int, seed: int) -> None:
    init = _start(target, "init")
    assert init.wait(timeout=60) == 0
    assert init.stdout is not None
    init.stdout.close()
    _publish(target, items)
    rng = random.Random(seed)
    workers = [_start(target, "run"), _start(target, "run")]
    interrupted = 0
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, 0.4))
        victim = workers.pop(rng.randrange(len(workers)))
        _stop(victim)
        interrupted += _stored(target) < items
        workers.append(_start(target, "run"))
    for proc in workers:
        _stop(proc)
    assert interrupted >= kills // 2, "the kills must interrupt real work"
    final = _start(target, "drain")
    code = final.wait(timeout=240)
    assert final.stdout is not None
    final.stdout.close()
    assert code == 0, target.log("drain").read_text(errors="replace")[-4000:]
    _check(target, items)


@pytest.mark.timeout(600)  # subprocesses killed and restarted many times; slow on a busy machine
@pytest.mark.slow
def test_sigkill_while_workers_race_on_hot_aggregates(tmp_path: Path) -> None:
    target = SourcingTarget(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}")
    _kill_loop(target, items=20_000, kills=12, seed=20261203)


@pytest.mark.timeout(900)  # subprocesses killed and restarted many times; slow on a busy machine
@pytest.mark.slow
@pytest.mark.servers
def test_sigkill_while_workers_race_on_nats_and_postgres(
    tmp_path: Path, nats: NatsServer, postgres: PostgresServer
) -> None:
    url, store = fresh_urls(nats, postgres)
    target = SourcingTarget(tmp_path, url, store)
    _kill_loop(target, items=8_000, kills=8, seed=20261204)
