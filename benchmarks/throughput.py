"""End-to-end throughput of a two-hop flow, beside the raw engine, measured in the same run.

Flow: publish -> bus rule -> handler A (reads and writes its store, emits an event)
      -> bus rule -> handler B (writes its store).
Baseline: the raw engine appending the same number of records in batches and reading them back
(the least work any flow over this engine must do).

    python benchmarks/throughput.py [--events 50000] [--workers 2]
    python benchmarks/throughput.py --engine nats [--events 20000]
    python benchmarks/throughput.py --schemas [--events 20000]

``--schemas`` runs the end-to-end flow with schemas declared for both event types (every
publish and every emitted event validated: msgspec Structs, then the same schemas as JSON Schema
documents checked by jsonschema-rs) beside the same flow without schemas, in the same run,
alternating, best of three rounds each; it prints each rate and its ratio to the flow without.

Prints events/s end-to-end (input events fully handled by both hops), the raw baseline, the ratio,
and the peak memory (RSS high-water mark) of the process.

It also prints the *engine floor* of the same flow: the engine calls the flow needs, made
directly and with as little Python as possible (records decoded to dicts, no Event objects, no
pattern matching, no handler calls, the store keys of a batch read in one call): per partition
batch and per consumer, one commit with the store reads' versions, the store writes, the inbox
rows, the emitted events and the offset move. No runtime can beat it on this engine; the gap
between it and end-to-end is what the runtime itself costs.

``--engine nats`` runs the flow on the production engine (NATS JetStream + PostgreSQL; it starts
both servers from their PyPI wheels, ``setpiece.engine.servers``) and measures, in the same run
and against the same nats-server, raw nats-py running the same two-hop flow with no framework
(the baseline: see :func:`raw_nats_flow`), and also raw nats-py publishing the input messages
and consuming them back once (one hop: half of what the flow moves through JetStream). It also
reports the production engine's own append+read and the engine floor of the flow, as for SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
sys.path.insert(0, SRC)

from setpiece import Event, RuntimeConfig, Service, Stack  # noqa: E402 - after sys.path
from setpiece.engine import (  # noqa: E402
    KVRead,
    KVWrite,
    OffsetCommit,
    StreamSpec,
    UnitOfWork,
    open_engine,
)
from setpiece.event import encode_event  # noqa: E402


class OrderPlaced(msgspec.Struct):
    order: str
    customer: str
    amount: int


class OrderPriced(msgspec.Struct):
    order: str
    total: int


def bench_schemas(kind: str | None) -> list[Any]:
    """The flow's two event types' schemas: ``struct`` (msgspec), ``json`` (JSON Schema)."""
    from setpiece.schemas import Schema

    if kind is None:
        return []
    if kind == "struct":
        return [Schema("order_placed", OrderPlaced), Schema("order_priced", OrderPriced)]
    return [Schema("order_placed", Schema("x", OrderPlaced).document),
            Schema("order_priced", Schema("x", OrderPriced).document)]


def build_stack(schemas: str | None = None) -> Stack:
    first = Service("first")
    second = Service("second")

    @first.on({"type": ["order_placed"]})
    async def price(event: Event, ctx) -> Event:  # type: ignore[no-untyped-def]
        key = event.data["customer"]
        total = await ctx.store.get(key, 0)
        await ctx.store.put(key, total + event.data["amount"])
        return Event(type="order_priced", data={"order": event.data["order"], "total": total})

    @second.on({"type": ["order_priced"]})
    async def record(event: Event, ctx) -> None:  # type: ignore[no-untyped-def]
        await ctx.store.put(event.data["order"], event.data["total"])

    return Stack("bench", services=[first, second], schemas=bench_schemas(schemas))


def events(n: int) -> list[Event]:
    return [
        Event(
            type="order_placed",
            source="bench",
            partitionkey=f"cu-{i % 500}",
            data={"order": f"o-{i}", "customer": f"cu-{i % 500}", "amount": 10},
        )
        for i in range(n)
    ]


async def end_to_end(url: str, n: int, concurrency: int = 16, store: str | None = None,
                     schemas: str | None = None) -> float:
    stack = build_stack(schemas)
    batch = events(n)
    config = RuntimeConfig(batch_size=512, concurrency=concurrency)
    async with stack.start(engine=url, store=store, config=config) as rt:
        started = time.perf_counter()
        for i in range(0, n, 1000):
            await rt.publish_many(batch[i : i + 1000])
        await rt.drain(timeout=600)
        elapsed = time.perf_counter() - started
        assert await rt.store("second").get(f"o-{n - 1}") is not None
    return n / elapsed


async def raw_engine(url: str, n: int, store: str | None = None) -> float:
    engine = await open_engine(url, store=store)
    try:
        await engine.create_stream(StreamSpec("raw", 4))
        payloads = [(e.partitionkey, encode_event(e)) for e in events(n)]
        started = time.perf_counter()
        for i in range(0, n, 1000):
            await engine.append("raw", payloads[i : i + 1000])
        seen = 0
        for partition in range(4):
            offset = 0
            while True:
                records = await engine.read("raw", partition, offset, 512)
                if not records:
                    break
                seen += len(records)
                offset = records[-1].offset + 1
        elapsed = time.perf_counter() - started
        assert seen == n
    finally:
        await engine.close()
    return n / elapsed


async def engine_floor(url: str, n: int, store: str | None = None) -> float:
    """The flow's engine work alone (see the module docstring): input events/s."""
    import msgspec

    decode, encode = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode
    engine = await open_engine(url, store=store)
    try:
        partitions = 4
        await engine.create_stream(StreamSpec("floor", partitions))
        payloads = [(e.partitionkey, encode_event(e)) for e in events(n)]
        started = time.perf_counter()
        for i in range(0, n, 1000):
            await engine.append("floor", payloads[i : i + 1000])
        read_at = [0] * partitions
        handled = 0
        while handled < n:
            for partition in range(partitions):
                records = await engine.read("floor", partition, read_at[partition], 512)
                if not records:
                    continue
                start, end = read_at[partition], records[-1].offset + 1
                read_at[partition] = end
                batch = [decode(r.value) for r in records]
                placed = [e for e in batch if e["type"] == "order_placed"]
                priced = [e for e in batch if e["type"] == "order_priced"]
                # Hop A: read and write the customer's total, emit an event.
                first = UnitOfWork(inbox=[("first", e["id"]) for e in placed])
                keys = list({e["data"]["customer"] for e in placed})
                stored = await engine.kv_get("first", keys) if keys else {}
                totals = {k: decode(stored[k][0]) if k in stored else 0 for k in keys}
                first.reads = [KVRead("first", k, stored[k][1] if k in stored else 0)
                               for k in keys]  # fmt: skip
                for e in placed:
                    customer = e["data"]["customer"]
                    total = totals[customer]
                    totals[customer] = total + e["data"]["amount"]
                    first.writes.append(KVWrite("first", customer, encode(totals[customer])))
                    out = {**e, "id": e["id"] + "-priced", "type": "order_priced",
                           "data": {"order": e["data"]["order"], "total": total}}  # fmt: skip
                    first.appends.append(("floor", e.get("partitionkey"), encode(out)))
                first.offsets = [OffsetCommit("first", "floor", partition, start, end)]
                # Hop B: write the order's total.
                second = UnitOfWork(inbox=[("second", e["id"]) for e in priced])
                second.writes = [KVWrite("second", e["data"]["order"], encode(e["data"]["total"]))
                                 for e in priced]  # fmt: skip
                second.offsets = [OffsetCommit("second", "floor", partition, start, end)]
                await engine.commit(first)
                await engine.commit(second)
                handled += len(priced)
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
    return n / elapsed


async def with_workers(path: str, n: int, workers: int) -> float:
    """The same flow handled by ``workers`` separate `setpiece run` processes on one file."""
    from setpiece.runtime import Runtime, RuntimeConfig

    url = f"sqlite:///{path}"
    engine = await open_engine(url)
    await Runtime(build_stack(), engine, RuntimeConfig()).provision()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, HERE])}
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock starts
            [sys.executable, "-m", "setpiece.cli", "run", "throughput:build_stack",
             "--engine", url, "--batch-size", "512", "--heartbeat", "0.2",
             "--session-timeout", "2", "--log-level", "warning"],
            env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        await asyncio.sleep(3)  # let every worker start and take its share of the partitions
        payloads = [(e.partitionkey, encode_event(e)) for e in events(n)]
        started = time.perf_counter()
        for i in range(0, n, 1000):
            await engine.append("bus.default", payloads[i : i + 1000])
        groups = ["first.price", "second.record"]
        while True:  # the harness polls; the workers do not
            ends = await engine.end_offsets("bus.default")
            behind = 0
            for group in groups:
                committed = await engine.committed(group, "bus.default")
                behind += sum(end - committed[p] for p, end in enumerate(ends))
            if behind == 0 and sum(ends) == 2 * n:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        await engine.close()
    return n / elapsed


async def _on_jetstream(
    url: str, n: int, name: str, consume: Callable[[Any, Any], Awaitable[None]]
) -> float:
    """Publish the ``n`` input events to a JetStream stream ``name`` (pipelined async publishes,
    acks awaited per 1000), then ``consume(js, sub)`` with a pull consumer on it (no acks):
    input events/s, from the first publish to the end of ``consume``."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

    from setpiece.engine import partition_for

    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4000)
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.*"],
                                         storage=StorageType.FILE))  # fmt: skip
        payloads = [(f"{name}.{partition_for(e.partitionkey, 4)}", encode_event(e))
                    for e in events(n)]  # fmt: skip
        started = time.perf_counter()
        for i in range(0, n, 1000):
            futures = [await js.publish_async(subject, data)
                       for subject, data in payloads[i : i + 1000]]  # fmt: skip
            for ack in await asyncio.gather(*futures):
                assert ack.seq
        sub = await js.pull_subscribe(
            f"{name}.*", durable=name, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        await consume(js, sub)
        elapsed = time.perf_counter() - started
        await js.delete_stream(name)
    finally:
        await nc.close()
    return n / elapsed


async def raw_nats(url: str, n: int) -> float:
    """nats-py alone: publish ``n`` messages to JetStream and consume them back (one hop)."""

    async def consume(js: Any, sub: Any) -> None:
        seen = 0
        while seen < n:
            seen += len(await sub.fetch(512, timeout=5))
        assert seen == n

    return await _on_jetstream(url, n, "rawbench", consume)


async def raw_nats_flow(url: str, n: int) -> float:
    """nats-py alone running the same two-hop flow, with no framework: input events/s.

    The input events are published as in :func:`raw_nats`; one pull consumer (no acks) reads
    the stream, and per record: an ``order_placed`` adds to a customer's total in a dict and
    publishes an ``order_priced`` event to the same stream (pipelined, acks awaited per fetched
    batch); an ``order_priced`` stores the order's total in another dict. Both hops' records go
    through JetStream, as the setpiece flow's do; nothing is durable but the stream itself.
    """
    import msgspec

    decode, encode = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode
    totals: dict[str, int] = {}
    orders: dict[str, int] = {}

    async def consume(js: Any, sub: Any) -> None:
        while len(orders) < n:
            pending = []
            for msg in await sub.fetch(512, timeout=5):
                event = decode(msg.data)
                data = event["data"]
                if event["type"] == "order_placed":
                    total = totals.get(data["customer"], 0)
                    totals[data["customer"]] = total + data["amount"]
                    out = {**event, "id": event["id"] + "-priced", "type": "order_priced",
                           "data": {"order": data["order"], "total": total}}  # fmt: skip
                    pending.append(await js.publish_async(msg.subject, encode(out)))
                else:
                    orders[data["order"]] = data["total"]
            for ack in await asyncio.gather(*pending):
                assert ack.seq

    return await _on_jetstream(url, n, "rawflow", consume)


def main_nats(n: int, concurrency: int) -> None:
    from setpiece.engine.servers import nats_server, postgres_server

    with nats_server() as nats, postgres_server() as pg:
        one_hop = asyncio.run(raw_nats(nats.url, n))
        flow = asyncio.run(raw_nats_flow(nats.url, n))
        engine_raw = asyncio.run(
            raw_engine(f"{nats.url}?prefix=raw", n, store=f"{pg.url}?schema=raw")
        )
        floor = asyncio.run(
            engine_floor(f"{nats.url}?prefix=floor", n, store=f"{pg.url}?schema=floor")
        )
        e2e = asyncio.run(
            end_to_end(f"{nats.url}?prefix=e2e", n, concurrency, store=f"{pg.url}?schema=e2e")
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events: {n} (NATS JetStream file storage + PostgreSQL fsync=off, loopback)")
    print(f"raw nats-py, the two-hop flow: {flow:>10,.0f} events/s   (baseline)")
    print(f"raw nats-py, one hop:          {one_hop:>10,.0f} msgs/s     (publish+consume)")
    print(f"raw engine append+read:        {engine_raw:>10,.0f} records/s")
    print(f"engine floor of the flow:      {floor:>10,.0f} events/s   "
          f"({floor / flow:.0%} of the baseline: the engine calls alone, no runtime)")
    print(f"end-to-end two-hop flow:       {e2e:>10,.0f} events/s")
    print(f"end-to-end / raw nats-py flow: {e2e / flow:>10.0%}")
    print(f"peak memory (max RSS):         {peak_mb:>10,.0f} MiB")


def validation_cost(kind: str, n: int = 100_000) -> float:
    """Microseconds to validate one ``order_placed`` event's data, alone."""
    from setpiece.schemas._validate import compile_validator

    validate = compile_validator(bench_schemas(kind)[0])
    data = events(1)[0].data
    started = time.perf_counter()
    for _ in range(n):
        validate(data)
    return (time.perf_counter() - started) / n * 1e6


def main_schemas(n: int, concurrency: int, rounds: int = 3) -> None:
    best: dict[str | None, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for kind in (None, "struct", "json"):
                rate = asyncio.run(end_to_end(f"sqlite:///{tmp}/{kind}{round_}.db", n,
                                              concurrency, schemas=kind))
                best[kind] = max(best.get(kind, 0.0), rate)
    off = best[None]
    print(f"events: {n} (SQLite file; every input and emitted event validated when on)")
    print(f"end-to-end, schemas off:               {off:>10,.0f} events/s  (baseline)")
    print(f"end-to-end, Struct schemas (msgspec):  {best['struct']:>10,.0f} events/s  "
          f"({best['struct'] / off:.0%} of off)")
    print(f"end-to-end, JSON Schema (jsonschema-rs): {best['json']:>8,.0f} events/s  "
          f"({best['json'] / off:.0%} of off)")
    print(f"one validation alone: Struct {validation_cost('struct'):.2f} us, "
          f"JSON Schema {validation_cost('json'):.2f} us (two per input event: in and emitted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight")
    parser.add_argument("--workers", type=int, default=0,
                        help="also run the flow on N `setpiece run` processes sharing the file")
    parser.add_argument("--engine", choices=["sqlite", "nats"], default="sqlite")
    parser.add_argument("--schemas", action="store_true",
                        help="the flow with event schemas validated, beside it without")
    args = parser.parse_args()
    if args.schemas:
        main_schemas(args.events, args.concurrency)
        return
    if args.engine == "nats":
        main_nats(args.events, args.concurrency)
        return
    with tempfile.TemporaryDirectory() as tmp:
        raw = asyncio.run(raw_engine(f"sqlite:///{tmp}/raw.db", args.events))
        floor = asyncio.run(engine_floor(f"sqlite:///{tmp}/floor.db", args.events))
        e2e = asyncio.run(end_to_end(f"sqlite:///{tmp}/e2e.db", args.events, args.concurrency))
        scaled = (
            asyncio.run(with_workers(f"{tmp}/workers.db", args.events, args.workers))
            if args.workers else None
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events: {args.events} (SQLite file, WAL, synchronous=NORMAL)")
    print(f"raw engine append+read:        {raw:>10,.0f} records/s  (baseline)")
    print(f"engine floor of the flow:      {floor:>10,.0f} events/s   "
          f"({floor / raw:.0%} of raw: the engine calls alone, no runtime)")
    print(f"end-to-end two-hop flow:       {e2e:>10,.0f} events/s")
    print(f"end-to-end / raw:              {e2e / raw:>10.0%}")
    print(f"end-to-end / engine floor:     {e2e / floor:>10.0%}")
    if scaled is not None:
        print(f"end-to-end, {args.workers} worker processes: {scaled:>10,.0f} events/s "
              f"({scaled / e2e:.2f}x one process)")
    print(f"peak memory (max RSS):         {peak_mb:>10,.0f} MiB")


if __name__ == "__main__":
    main()
