"""Benchmark: the time to start and stop an ephemeral test stack (``setpiece_stack``, the pytest
plugin's fixture) on each engine, beside opening and closing the bare engine in the same run.

    python benchmarks/testing.py [--rounds 20] [--engines memory,sqlite,nats]

What one round of a test's stack does, as the plugin does it: fresh storage for the test
(``memory``; an SQLite file in a new directory; on NATS + PostgreSQL a namespace of its own), a
stack started on it (streams and consumer groups created, consumers, timers and discovery
running), stopped, and on NATS + PostgreSQL its namespace emptied for the next test (JetStream
streams deleted, tables emptied; the first round creates the schema, later ones reuse it, as
the tests of one process do). The stack has three services, five handlers, a bus of 4
partitions with a rule to a stream of 2, and a workflow. The baseline opens the same engine on
fresh storage, creates the same streams and closes it: the least a test on that engine can do.
The servers are started once, before timing (as the plugin does once per session). Targets:
under 50 ms on memory, 150 ms on SQLite, 1 s on NATS + PostgreSQL. Medians, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from setpiece import Bus, Context, Event, Service, Stack, Stream, Workflow
from setpiece.engine import StreamSpec, open_engine
from setpiece.testing import StackStarter
from setpiece.testing._engines import (
    Namespaces,
    Servers,
    drop_namespace,
    engine_urls,
    started_servers,
)

TARGETS_MS = {"memory": 50.0, "sqlite": 150.0, "nats": 1000.0}


def bench_stack() -> Stack:
    orders, loyalty, audit = Service("orders"), Service("loyalty"), Service("audit")

    @orders.on({"type": ["order_placed"]})
    async def place(event: Event, ctx: Context) -> Event:
        return Event(type="order_paid", data=event.data)

    @orders.on({"type": ["order_cancelled"]})
    async def cancel(event: Event, ctx: Context) -> None:
        await ctx.store.delete(event.data["order"])

    @loyalty.on({"type": ["order_paid"]})
    async def award(event: Event, ctx: Context) -> Event:
        return Event(type="points_awarded", data={"points": 1})

    @loyalty.every(3600)
    async def expire(event: Event) -> None:
        pass

    @audit.on({"type": [{"prefix": "order_"}]})
    async def note(event: Event, ctx: Context) -> None:
        await ctx.store.put(event.id, event.type)

    bus = Bus("default", partitions=4)
    ledger = Stream("ledger", partitions=2)
    bus.rule("to_ledger", {"type": ["points_awarded"]}, ledger)
    flow = Workflow("refund", {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    return Stack("bench", services=[orders, loyalty, audit], buses=[bus], streams=[ledger],
                 workflows=[flow])


async def stack_round(kind: str, directory: Path, namespaces: Namespaces | None,
                      stack: Stack) -> tuple[float, float]:
    """(start + stop + cleanup, of which the cleanup) in seconds."""
    started = time.perf_counter()
    urls = namespaces.take(directory) if namespaces else engine_urls(kind, directory, None)
    starter = StackStarter(urls)
    await starter.start(stack)
    await starter.aclose()
    cleaned = time.perf_counter()
    if namespaces is not None:
        await namespaces.give_back(urls)
    done = time.perf_counter()
    return done - started, done - cleaned


async def engine_round(kind: str, directory: Path, servers: Servers | None,
                       specs: list[StreamSpec]) -> float:
    """Open the bare engine on fresh storage, create the streams, close it; in seconds."""
    started = time.perf_counter()
    urls = engine_urls(kind, directory, servers)
    engine = await open_engine(urls.engine, store=urls.store)
    for spec in specs:
        await engine.create_stream(spec)
    await engine.close()
    elapsed = time.perf_counter() - started
    if urls.namespace is not None:
        await drop_namespace(urls)  # not timed: the baseline leaves its namespace behind
    return elapsed


def specs_of(stack: Stack) -> list[StreamSpec]:
    return ([StreamSpec("dead_letters", 1)]
            + [StreamSpec(f"bus.{b.name}", b.partitions) for b in stack.buses.values()]
            + [StreamSpec(s.name, s.partitions) for s in stack.streams.values()])


async def measure(kind: str, rounds: int, servers: Servers | None = None
                  ) -> dict[str, float]:
    """Median milliseconds of ``rounds`` rounds: ``stack`` (start + stop + cleanup),
    ``cleanup`` (its namespace removal) and ``engine`` (the baseline)."""
    stack = bench_stack()
    specs = specs_of(stack)
    stacks: list[tuple[float, float]] = []
    engines: list[float] = []
    namespaces = Namespaces(servers) if kind == "nats" and servers else None
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds + 1):  # the first round warms imports and connections up
            directory = Path(tmp) / f"r{n}"
            directory.mkdir()
            stack_time = await stack_round(kind, directory, namespaces, stack)
            (directory / "base").mkdir()
            engine_time = await engine_round(kind, directory / "base", servers, specs)
            if n:
                stacks.append(stack_time)
                engines.append(engine_time)
    if namespaces is not None:
        await namespaces.drop_all()
    return {
        "stack": statistics.median(t for t, _ in stacks) * 1000,
        "cleanup": statistics.median(c for _, c in stacks) * 1000,
        "engine": statistics.median(engines) * 1000,
    }


@contextlib.contextmanager
def servers_for(kinds: list[str]) -> Iterator[Servers | None]:
    if "nats" not in kinds:
        yield None
        return
    with started_servers() as servers:
        yield servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20, help="rounds per engine (median)")
    ap.add_argument("--engines", default="memory,sqlite,nats",
                    help="comma-separated: memory, sqlite, nats")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.engines.split(",") if k.strip()]
    with servers_for(kinds) as servers:
        results = {kind: asyncio.run(measure(kind, args.rounds, servers)) for kind in kinds}
    print(f"ephemeral test stack: start + stop (+ emptying its namespace), median of {args.rounds} "
          f"rounds, Python {sys.version.split()[0]}")
    head = ("engine", "stack (ms)", "of which cleanup", "bare engine (ms)", "target", "")
    print(f"{head[0]:<8} {head[1]:>11} {head[2]:>17} {head[3]:>17} {head[4]:>8}")
    for kind, found in results.items():
        target = TARGETS_MS[kind]
        verdict = "ok" if found["stack"] < target else "MISSED"
        print(f"{kind:<8} {found['stack']:>11.1f} {found['cleanup']:>17.1f} "
              f"{found['engine']:>17.1f} {target:>8.0f} {verdict}")
    print("bare engine: open on fresh storage, create the stack's streams, close (the baseline).")


if __name__ == "__main__":
    main()
