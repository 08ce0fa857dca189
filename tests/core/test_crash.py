"""Exactly-once effects under SIGKILL: kill a worker at random moments, restart it, check.

A backlog of events flows through two hops (a handler that counts per customer and emits, and a
handler that counts per item). The worker is killed many times mid-flight. At the end every
customer's count is exactly its number of events, every item was tallied exactly once, and the
bus holds exactly one emitted event per input: nothing lost, nothing doubled.

On the production engine (NATS JetStream + PostgreSQL, its own servers) the same test also
restarts nats-server and crashes PostgreSQL while a worker runs: the worker's clients reconnect
and it carries on (it must make progress after each restart before it is killed).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from setpiece.engine import Engine, open_engine
from setpiece.engine.servers import nats_cluster, nats_server, postgres_server
from setpiece.event import Event, encode_event

APP = Path(__file__).with_name("crash_app.py")
CUSTOMERS = 17
_WORK = 3_000  # items of work (over both hops) each round of kills starts with, at least
#: the cluster fault test runs this many times in a row, each with its own seed and servers
#: (about a minute each). SETPIECE_CLUSTER_RUNS=N runs N instead.
CLUSTER_RUNS = int(os.environ.get("SETPIECE_CLUSTER_RUNS", "10"))


class Target:
    """Where the crash test runs: an engine URL (and a store URL for the NATS engine).

    Each worker's stderr goes to its own file in ``logs``, so a failure can show what the
    worker said (its warnings, a traceback, or the stacks ``faulthandler`` dumps on SIGABRT).
    """

    def __init__(self, logs: Path, url: str, store: str | None = None, app: Path = APP) -> None:
        self.logs, self.url, self.store, self.app = logs, url, store, app
        self.started = 0
        self.published = 0  # input items appended so far (numbered 0, 1, ...)

    def worker(self, mode: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONFAULTHANDLER": "1",
               "PYTHONPATH": os.pathsep.join([str(Path("src").resolve()), *sys.path])}
        args = [sys.executable, str(self.app), self.url, mode,
                *([self.store] if self.store else [])]
        self.started += 1
        with self.log(mode).open("wb") as err:
            return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=err)

    def log(self, mode: str) -> Path:
        """The stderr file of the latest worker started in ``mode``."""
        return self.logs / f"{self.started:03d}-{mode}.log"

    def call(self, fn: Callable[[Engine], object]) -> object:
        async def main() -> object:
            engine = await open_engine(self.url, store=self.store)
            try:
                return await fn(engine)  # type: ignore[misc]
            finally:
                await engine.close()

        return asyncio.run(main())


def _init(target: Target) -> None:
    init = target.worker("init")
    assert init.wait(timeout=60) == 0
    assert init.stdout is not None
    init.stdout.close()


def _publish_backlog(target: Target, items: int) -> None:
    """Append ``items`` more input items, numbered on from those appended before."""
    first = target.published

    async def publish(engine: Engine) -> None:
        records = [
            (f"cu-{i % CUSTOMERS}",
             encode_event(Event(type="work", source="test", partitionkey=f"cu-{i % CUSTOMERS}",
                                data={"item": i, "customer": f"cu-{i % CUSTOMERS}"})))
            for i in range(first, first + items)
        ]
        for start in range(0, items, 500):
            await engine.append("bus.default", records[start : start + 500])

    target.call(publish)
    target.published += items


def _top_up(target: Target, work: int) -> None:
    """Append input items until both hops together have at least ``work`` left: on a fast
    machine the backlog may be gone before the kills and faults that should interrupt it."""
    left = 2 * target.published - (target.published - _pending(target)) - _tallied(target)
    if left < work:
        _publish_backlog(target, (work - left + 1) // 2)


def _pending(target: Target) -> int:
    """Input events not yet counted by the first hop."""
    items = target.published

    async def pending(engine: Engine) -> int:
        rows = await engine.kv_scan("svc:counter", "cu-", 10_000)
        return items - sum(msgspec.json.decode(v) for _, v in rows)

    result = target.call(pending)
    assert isinstance(result, int)
    return result


def _tallied(target: Target) -> int:
    """Items the second hop has tallied."""

    async def tallied(engine: Engine) -> int:
        return len(await engine.kv_scan("svc:tally", "item:", 1_000_000))

    result = target.call(tallied)
    assert isinstance(result, int)
    return result


def _check(target: Target) -> None:
    items = target.published

    async def check(engine: Engine) -> None:
        counts = dict(await engine.kv_scan("svc:counter", "cu-", 10_000))
        per_customer = {k: msgspec.json.decode(v) for k, v in counts.items()}
        expected = {f"cu-{c}": len(range(c, items, CUSTOMERS)) for c in range(CUSTOMERS)}
        assert per_customer == expected
        tallies = dict(await engine.kv_scan("svc:tally", "item:", 1_000_000))
        if len(tallies) != items:
            raise AssertionError(await _where_the_untallied_went(engine, items, tallies))
        assert {msgspec.json.decode(v) for v in tallies.values()} == {1}
        done, disorder = 0, []
        for partition, end in enumerate(await engine.end_offsets("bus.default")):
            offset = 0
            while offset < end:
                batch = await engine.read("bus.default", partition, offset, 1000)
                assert batch, f"bus.default[{partition}] unreadable at {offset} (end {end})"
                for r in batch:
                    emitted = msgspec.json.decode(r.value)
                    done += emitted["type"] == "done"
                    if emitted["type"] == "disorder":
                        disorder.append(emitted["data"])
                offset = batch[-1].offset + 1
        assert done == items
        assert disorder == [], f"a customer's items were handled out of order: {disorder[:5]}"
        assert await engine.end_offsets("setpiece.deadletters") == [0]

    target.call(check)


async def _where_the_untallied_went(
    engine: Engine, items: int, tallies: dict[str, bytes]
) -> str:
    """For a failure: which items the second hop did not tally, where their "done" events are
    on the bus (or that they are not there), and where each group reading it stands."""
    missing = sorted(i for i in range(items) if f"item:{i}" not in tallies)
    found: dict[int, list[tuple[int, int]]] = {}
    ends = await engine.end_offsets("bus.default")
    for partition, end in enumerate(ends):
        offset = 0
        while offset < end:
            batch = await engine.read("bus.default", partition, offset, 1000)
            if not batch:
                break
            for r in batch:
                emitted = msgspec.json.decode(r.value)
                if emitted["type"] == "done":
                    found.setdefault(emitted["data"]["item"], []).append((partition, r.offset))
            offset = batch[-1].offset + 1
    groups = [g for g, s in await engine.groups() if s == "bus.default"]
    committed = {g: await engine.committed(g, "bus.default") for g in groups}
    lines = [f"{len(missing)} of {items} items not tallied (first {missing[:5]}); bus ends "
             f"{ends}; committed {committed}"]
    for item in missing[:10]:
        lines.append(f"  item {item}: done at {found.get(item, 'nowhere on the bus')}")
    return "\n".join(lines)


def _kill_loop(
    target: Target, kills: int, seed: int,
    during: dict[int, Callable[[], None]] | None = None,
) -> int:
    """Start a worker and SIGKILL it ``kills`` times; returns how many kills hit pending work
    (in either hop). Each round starts with at least ``_WORK`` items of work left.

    ``during[i]`` runs while the i-th worker runs (a server restart): the worker must then move
    both hops forward before it is killed.
    """
    rng = random.Random(seed)
    killed_mid_flight = 0
    for round_ in range(kills):
        _top_up(target, _WORK)
        proc = target.worker("run")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.3))
        if during and round_ in during:
            during[round_]()
            _top_up(target, _WORK)  # work for after the fault, however fast it went before
            before = _pending(target), _tallied(target)
            deadline = time.monotonic() + 60
            while (_pending(target), _tallied(target)) == before or (
                before[0] > 0 and _pending(target) == before[0]
            ):
                assert proc.poll() is None, "the worker died with the server restart"
                if time.monotonic() > deadline:
                    proc.send_signal(signal.SIGUSR1)  # it says where each group stands
                    time.sleep(30)
                    proc.kill()
                    said = target.log("run").read_text(errors="replace").splitlines()[-120:]
                    raise AssertionError("no progress after the server restart; the worker "
                                         "says:\n" + "\n".join(said))
                time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        # Work was interrupted if either hop had work left: items not yet counted by the
        # first hop, or not yet tallied by the second.
        killed_mid_flight += _pending(target) > 0 or _tallied(target) < target.published
    return killed_mid_flight


def _drain(target: Target) -> None:
    final = target.worker("drain")
    try:
        code = final.wait(timeout=300)
    except subprocess.TimeoutExpired:
        final.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack first
        code = final.wait(timeout=30)
    assert final.stdout is not None
    final.stdout.close()
    if code != 0:
        said = target.log("drain").read_text(errors="replace").splitlines()[-80:]
        raise AssertionError(f"the drain worker exited with {code}; its stderr ends with:\n"
                             + "\n".join(said))


@pytest.mark.timeout(600)  # subprocesses killed and restarted many times; slow on a busy machine
@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    items, kills = 12_000, 15
    target = Target(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}")
    _init(target)
    _publish_backlog(target, items)
    killed_mid_flight = _kill_loop(target, kills, seed=20261122)
    assert killed_mid_flight >= kills // 2, "the kills must interrupt real work"
    _drain(target)
    _check(target)


@pytest.mark.timeout(600)  # subprocesses killed and restarted many times; slow on a busy machine
@pytest.mark.slow
@pytest.mark.servers
def test_sigkill_and_server_restarts_on_nats_and_postgres(tmp_path: Path) -> None:
    """The same on NATS JetStream + PostgreSQL, with nats-server and PostgreSQL restarted
    under a running worker (their own servers: the session's are not disturbed)."""
    items, kills = 12_000, 10
    with nats_server() as nats, postgres_server() as pg:
        target = Target(
            tmp_path, f"{nats.url}?prefix=crash&timeout=60", f"{pg.url}?schema=crash"
        )
        _init(target)
        _publish_backlog(target, items)

        def crash_postgres() -> None:
            pg.kill()  # immediate shutdown: crash recovery at the next start
            time.sleep(0.5)
            pg.start()

        def restart_nats() -> None:
            nats.stop()
            time.sleep(0.5)
            nats.start()

        during = {2: restart_nats, 5: crash_postgres, 7: restart_nats}
        killed_mid_flight = _kill_loop(target, kills, seed=20261123, during=during)
        assert killed_mid_flight >= kills // 2, "the kills must interrupt real work"
        _drain(target)
        _check(target)


@pytest.mark.timeout(900)  # a cluster, PostgreSQL and workers killed and restarted many times
@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.parametrize("seed", range(20261203, 20261203 + CLUSTER_RUNS))
def test_a_cluster_that_loses_nodes_loses_nothing_and_doubles_nothing(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a 3-node JetStream cluster (streams with 3 replicas) + PostgreSQL, while workers are
    SIGKILLed at random: one node SIGKILLed in the middle of the backlog and restarted later,
    the node leading the most streams killed (its streams elect new leaders), a node frozen
    with SIGSTOP (cut off, as by a network partition) and let go, PostgreSQL crashed. Nothing
    is lost, nothing doubled, and each customer's items are handled in order."""
    items, kills = 12_000, 12
    with nats_cluster(tmp_path / "nats", nodes=3) as cluster, postgres_server() as pg:
        target = Target(tmp_path, f"{cluster.url}&prefix=crash&timeout=60",
                        f"{pg.url}?schema=crash")
        # a drain that times out asks each server directly what it holds (crash_app.py)
        monkeypatch.setenv("SETPIECE_DIAG_SERVERS", ",".join(n.url for n in cluster.nodes))
        _init(target)
        _publish_backlog(target, items)
        down: list[str] = []

        def kill_a_node() -> None:
            cluster.nodes[1].kill()
            down.append("n2")

        def restart_killed() -> None:
            for name in down:
                cluster.node(name).start()
            down.clear()

        def kill_the_busiest_leader() -> None:
            leaders = list(cluster.stream_leaders().values())
            assert leaders, "no stream leaders reported"
            busiest = max(set(leaders), key=leaders.count)
            cluster.node(busiest).kill()
            down.append(busiest)

        def freeze_a_node() -> None:
            node = cluster.nodes[2]
            node.pause()
            time.sleep(3)
            node.resume()

        def crash_postgres() -> None:
            pg.kill()
            time.sleep(0.5)
            pg.start()

        during = {1: kill_a_node, 3: restart_killed, 4: kill_the_busiest_leader,
                  6: restart_killed, 7: freeze_a_node, 9: crash_postgres}
        killed_mid_flight = _kill_loop(target, kills, seed=seed, during=during)
        assert killed_mid_flight >= kills // 2, "the kills must interrupt real work"
        restart_killed()
        _drain(target)
        _check(target)
