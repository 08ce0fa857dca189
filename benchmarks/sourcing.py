"""Benchmark: event-sourced commands per second on an SQLite file, beside the ``eventsourcing``
library (its ``Application`` on SQLite, the same aggregate) in the same run; and the time to load
an aggregate of 10,000 events with a snapshot.

    python benchmarks/sourcing.py [--aggregates 10000] [--commands 10] [--batch 1000]

The aggregate is a bank account: state ``{"balance": n}``, one command (deposit an amount) that
decides one event (``deposited``), folded by adding the amount. Every command loads the
aggregate (snapshot, then the events after it), decides, and appends its event with an expected
version; setpiece also publishes each event on the default bus (the outbox) in the same
transaction. The workload is ``--aggregates`` aggregates x ``--commands`` commands each, in
rounds (one command per aggregate per round).

Columns:

- ``setpiece execute_many``: ``rt.execute_many`` with ``--batch`` commands per transaction;
- ``setpiece execute``: ``rt.aggregate(name, id).execute(command)``, one transaction each;
- ``eventsourcing``: ``repository.get`` + the aggregate's command method + ``app.save``, one
  transaction each (its only way), on its SQLite recorder
  (``PERSISTENCE_MODULE=eventsourcing.sqlite``).

Both use a fresh SQLite file in WAL mode. setpiece's default is ``synchronous=normal`` (no fsync
per commit; a process crash loses nothing committed, a power cut may lose the last
transactions), ``eventsourcing`` keeps SQLite's default (``full``: an fsync per commit), so a
third column runs ``execute`` with ``?synchronous=full``: the same durability as the peer. The
peer and that column run ``--peer-aggregates`` aggregates (1,000 by default): one transaction
per command, their rate does not depend on the number of aggregates, and 100,000 fsyncs would
take minutes. ``eventsourcing`` is not a dependency of setpiece: it
comes with the ``bench`` extra (``pip install -e '.[bench]'``); without it the peer column is
skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from setpiece import Event, Stack
from setpiece.sourcing import Aggregate, Snapshots


def decide(state: dict[str, Any], command: dict[str, Any]) -> list[Event]:
    return [Event(type="deposited", data={"amount": command["amount"]})]


def evolve(state: dict[str, Any], event: Event) -> dict[str, Any]:
    return {"balance": state["balance"] + event.data["amount"]}


def account(every: int = 100) -> Aggregate:
    return Aggregate("account", initial=lambda: {"balance": 0}, decide=decide, evolve=evolve,
                     snapshots=Snapshots(every=every) if every else None)


def stack(every: int = 100) -> Stack:
    return Stack("bank", aggregates=[account(every)])


async def setpiece_commands(
    path: str, aggregates: int, commands: int, batch: int, query: str = ""
) -> float:
    """Commands per second; ``batch`` commands per transaction (0: ``execute``, one each)."""
    ids = [f"acc-{i}" for i in range(aggregates)]
    async with stack().start(f"sqlite:///{path}{query}") as rt:
        started = time.perf_counter()
        for round_ in range(commands):
            command = {"amount": round_ + 1}
            if batch:
                for at in range(0, aggregates, batch):
                    await rt.execute_many("account", [(i, command) for i in ids[at:at + batch]])
            else:
                for i in ids:
                    await rt.aggregate("account", i).execute(command)
        elapsed = time.perf_counter() - started
        state, version = await rt.aggregate("account", ids[-1]).load()
        assert version == commands and state["balance"] == commands * (commands + 1) // 2
    return aggregates * commands / elapsed


async def setpiece_load(path: str, events: int, every: int, extra: int = 0) -> float:
    """Median milliseconds of ``load()`` of one aggregate of ``events + extra`` events."""
    async with stack(every).start(f"sqlite:///{path}") as rt:
        total = events + extra
        for at in range(0, total, 1000):
            await rt.execute_many(
                "account", [("big", {"amount": 1})] * min(1000, total - at))
        handle = rt.aggregate("account", "big")
        assert (await handle.load()) == ({"balance": total}, total)
        times = []
        for _ in range(30 if every else 5):
            t0 = time.perf_counter()
            await handle.load()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def eventsourcing_peer(path: str, aggregates: int, commands: int) -> tuple[float, float] | None:
    """(commands per second, load ms of 10,000 events with a snapshot), or None without it."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate as ESAggregate
        from eventsourcing.domain import event
    except ImportError:
        return None

    class Account(ESAggregate):
        def __init__(self) -> None:
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    class Bank(Application[Any]):
        snapshotting_intervals = {Account: 100}  # noqa: RUF012 - the library's own class attribute

    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = path
    app = Bank()
    ids: list[Any] = []
    started = time.perf_counter()
    for round_ in range(commands):
        for n in range(aggregates):
            if round_ == 0:  # the first command creates the aggregate, then deposits
                acc = Account()
                ids.append(acc.id)
            else:
                acc = app.repository.get(ids[n])
            acc.deposit(round_ + 1)
            app.save(acc)
    elapsed = time.perf_counter() - started
    assert app.repository.get(ids[-1]).balance == commands * (commands + 1) // 2
    big = Account()
    for _ in range(10):
        for _ in range(1000):
            big.deposit(1)
        app.save(big)  # snapshots every 100 events, taken on save
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        got = app.repository.get(big.id)
        times.append(time.perf_counter() - t0)
    assert got.balance == 10_000
    app.close()
    return aggregates * commands / elapsed, statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aggregates", type=int, default=10_000)
    parser.add_argument("--commands", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--peer-aggregates", type=int, default=1000,
                        help="aggregates for the peer and the fsync-per-commit column (their "
                             "rate does not depend on it: one transaction per command)")
    args = parser.parse_args()
    n, c = args.aggregates, args.commands
    pn = min(n, args.peer_aggregates)
    with tempfile.TemporaryDirectory() as tmp:
        def fresh(name: str) -> str:
            return os.path.join(tmp, name)

        many = asyncio.run(setpiece_commands(fresh("many.db"), n, c, args.batch))
        one = asyncio.run(setpiece_commands(fresh("one.db"), n, c, 0))
        full_sync = asyncio.run(
            setpiece_commands(fresh("full.db"), pn, c, 0, "?synchronous=full"))
        snap = asyncio.run(setpiece_load(fresh("load.db"), 10_000, 100))
        worst = asyncio.run(setpiece_load(fresh("worst.db"), 10_000, 100, extra=99))
        full = asyncio.run(setpiece_load(fresh("full.db"), 10_000, 0))
        peer = eventsourcing_peer(fresh("es.db"), pn, c)
    print(f"{n:,} aggregates x {c} commands = {n * c:,} commands, SQLite file")
    print(f"  setpiece execute_many ({args.batch}/tx) {many:>12,.0f} commands/s")
    print(f"  setpiece execute (1/tx)          {one:>12,.0f} commands/s")
    print(f"  setpiece execute (1/tx, fsync)   {full_sync:>12,.0f} commands/s  "
          f"({pn:,} x {c}, ?synchronous=full)")
    if peer is None:
        print("  eventsourcing                    (not installed: pip install -e '.[bench]')")
    else:
        rate = peer[0]
        print(f"  eventsourcing Application (1/tx) {rate:>12,.0f} commands/s  "
              f"({pn:,} x {c}, its SQLite defaults: WAL, fsync per commit)")
        print(f"  ratio: execute_many {many / rate:.1f}x, execute {one / rate:.1f}x, "
              f"execute with fsync {full_sync / rate:.1f}x eventsourcing (target >= 20x)")
    print("load of one aggregate (median):")
    print(f"  10,000 events, snapshot at 10,000        {snap:8.3f} ms (target < 2 ms)")
    print(f"  10,099 events, snapshot at 10,000 (+99)  {worst:8.3f} ms")
    print(f"  10,000 events, no snapshot (full fold)   {full:8.3f} ms")
    if peer is not None:
        print(f"  eventsourcing, 10,000 events, snapshot   {peer[1]:8.3f} ms")


if __name__ == "__main__":
    main()
