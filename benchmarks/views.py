"""Views from a durable backlog: a windowed aggregate and a stream-table join, on an SQLite file.

(a) a tumbling 10-second count-and-sum over N events (1,000,000) on 10,000 keys, their times
    spread over 60 seconds of event time (six windows per key), each closed window's final
    result written to an output stream;
(b) a stream-table join of N orders against a table of 10,000 customers that receives 50,000
    updates in between (appended among the orders), each enriched order written to an output
    stream.

Each starts from a backlog already in the streams (loaded by another process beforehand) and
stops when the last result is committed (the views' offsets at the end of their input, and the
output holding every result): the time includes starting the stack. Beside them, in the same
run and on the same events: a plain-Python dict loop doing the same work from the encoded
records (the floor), SQLite by hand with a commit per 1,000 events (the durable floor: msgspec
decoding, a dict fold, the touched rows upserted and the outputs inserted per commit), and
Bytewax where it is installed (in memory). Each case runs in its own process, so each peak
memory (RSS high-water mark) is its own.

    python benchmarks/views.py [--events 1000000] [--case all|a|b] [--no-bytewax]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import msgspec  # noqa: E402

from setpiece import Event, Stack, Stream  # noqa: E402 - after sys.path
from setpiece.engine import open_engine  # noqa: E402
from setpiece.event import encode_event  # noqa: E402
from setpiece.views import Aggregate, Join, Table, Tumbling  # noqa: E402

KEYS = 10_000
CUSTOMERS = 10_000
UPDATES = 50_000
SPAN = 60  # seconds of event time the events cover
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
PARTITIONS = 4


def _time(i: int, n: int) -> str:
    us = T0 * 1_000_000 + (i * SPAN * 1_000_000) // n
    s, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:06d}Z"


def events_a(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        key = f"k{i % KEYS}"
        out.append((key, encode_event(Event(type="tick", source="bench", partitionkey=key,
                                            time=_time(i, n),
                                            data={"key": key, "amount": i % 100}))))
    return out


def events_b(n: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]],
                              list[tuple[str, int, bytes]]]:
    """(initial customers, orders, updates): every update with the index of the order
    it is appended after."""
    def customer(c: int, version: int) -> tuple[str, bytes]:
        key = f"cu-{c}"
        return key, encode_event(Event(type="customer", source="bench", partitionkey=key,
                                       data={"name": f"customer {c}", "tier": version % 3}))

    initial = [customer(c, 0) for c in range(CUSTOMERS)]
    orders = []
    for i in range(n):
        key = f"cu-{(i * 7919) % CUSTOMERS}"
        orders.append((key, encode_event(Event(type="order", source="bench", partitionkey=key,
                                               data={"order": i, "amount": i % 100}))))
    updates = []
    for u in range(UPDATES):
        key, value = customer((u * 31) % CUSTOMERS, u + 1)
        updates.append((key, (u * n) // UPDATES, value))
    return initial, orders, updates


# -- setpiece --------------------------------------------------------------------------------

def stack_a() -> Stack:
    ticks = Stream("ticks", partitions=PARTITIONS)
    results = Stream("results", partitions=PARTITIONS)
    agg = Aggregate("per_key", ticks, key=lambda e: e.partitionkey, window=Tumbling(10),
                    initial=lambda: [0, 0],
                    add=lambda acc, e: [acc[0] + 1, acc[1] + e.data["amount"]],
                    emit_to=results)
    return Stack("bench-a", streams=[ticks, results], views=[agg])


def stack_b() -> Stack:
    customers = Stream("customers", partitions=PARTITIONS)
    orders = Stream("orders", partitions=PARTITIONS)
    enriched = Stream("enriched", partitions=PARTITIONS)
    table = Table("customer_table", customers, key=lambda e: e.partitionkey)
    join = Join("enrich", orders, table, emit_to=enriched, how="left")
    return Stack("bench-b", streams=[customers, orders, enriched], views=[table, join])


async def _load(url: str, stack: Stack, records: dict[str, list[tuple[str | None, bytes]]]) -> None:
    from setpiece._assembly import new_runtime

    engine = await open_engine(url)
    try:
        await new_runtime(stack, engine).provision()
        for stream, rows in records.items():
            for start in range(0, len(rows), 20_000):
                await engine.append(stream, rows[start:start + 20_000])
    finally:
        await engine.close()


async def _run_views(url: str, stack: Stack, inputs: list[str], outputs: dict[str, int]) -> float:
    """Start the stack, wait until every view's input is consumed and the outputs hold
    ``outputs`` records; returns the seconds that took."""
    started = time.perf_counter()
    async with stack.start(engine=url) as rt:
        engine = rt.engine
        while True:
            lag = sum((await rt.lag()).values())
            if not lag:
                counts = {s: sum(await engine.end_offsets(s)) for s in outputs}
                if all(counts[s] >= n for s, n in outputs.items()):
                    break
            await asyncio.sleep(0.02)
        return time.perf_counter() - started


def load_a(n: int, path: str) -> dict[str, Any]:
    asyncio.run(_load(f"sqlite:///{path}", stack_a(), {"ticks": list(events_a(n))}))
    return {"results": closed_a(n)}


def setpiece_a(n: int, path: str, results: int) -> dict[str, Any]:
    seconds = asyncio.run(_run_views(f"sqlite:///{path}", stack_a(), ["ticks"],
                                     {"results": results}))
    return {"events": n, "seconds": seconds}


def closed_a(n: int) -> int:
    """Final results (a) emits: every window but the last (still open) of each key."""
    windows: dict[str, set[int]] = {}
    last = 0
    for i in range(n):
        w = ((i * SPAN * 1_000_000) // n) // 10_000_000
        windows.setdefault(f"k{i % KEYS}", set()).add(w)
        last = max(last, w)
    return sum(len(ws - {last}) for ws in windows.values())


def load_b(n: int, path: str) -> dict[str, Any]:
    url = f"sqlite:///{path}"
    initial, orders, updates = events_b(n)
    asyncio.run(_load(url, stack_b(), {"customers": list(initial), "orders": []}))

    async def interleave() -> None:  # the updates appended among the orders
        engine = await open_engine(url)
        try:
            cut, pending = 0, []
            for key, at, value in updates:
                if at - cut >= 20_000:
                    await engine.append("orders", list(orders[cut:at]))
                    await engine.append("customers", pending)
                    cut, pending = at, []
                pending.append((key, value))
            await engine.append("orders", list(orders[cut:]))
            await engine.append("customers", pending)
        finally:
            await engine.close()

    asyncio.run(interleave())
    return {}


def setpiece_b(n: int, path: str) -> dict[str, Any]:
    seconds = asyncio.run(_run_views(f"sqlite:///{path}", stack_b(), ["orders", "customers"],
                                     {"enriched": n}))
    return {"events": n, "seconds": seconds}


# -- floors ----------------------------------------------------------------------------------

class _Tick(msgspec.Struct):
    time: str
    partitionkey: str
    data: dict[str, Any]


def dict_loop_a(n: int) -> dict[str, Any]:
    records = events_a(n)
    decode = msgspec.json.Decoder(_Tick).decode
    started = time.perf_counter()
    state: dict[tuple[str, int], list[int]] = {}
    for _, value in records:
        tick = decode(value)
        t = tick.time
        second = int(t[17:19]) + 60 * int(t[14:16])
        window = second - second % 10
        acc = state.get((tick.partitionkey, window))
        if acc is None:
            state[(tick.partitionkey, window)] = [1, tick.data["amount"]]
        else:
            acc[0] += 1
            acc[1] += tick.data["amount"]
    return {"events": n, "seconds": time.perf_counter() - started}


def sqlite_floor_a(n: int, path: str) -> dict[str, Any]:
    """By hand: records read from a table 1,000 at a time, decoded, folded in a dict, the
    touched windows upserted and the read position saved, one commit per 1,000."""
    db = _raw_backlog(path, events_a(n))
    db.execute("CREATE TABLE state (key TEXT, win INTEGER, count INTEGER, total INTEGER,"
               " PRIMARY KEY (key, win)) WITHOUT ROWID")
    decode = msgspec.json.Decoder(_Tick).decode
    started = time.perf_counter()
    position = 0
    while True:
        rows = db.execute("SELECT off, value FROM records WHERE off >= ? ORDER BY off LIMIT 1000",
                          (position,)).fetchall()
        if not rows:
            break
        touched: dict[tuple[str, int], list[int]] = {}
        for _, value in rows:
            tick = decode(value)
            t = tick.time
            second = int(t[17:19]) + 60 * int(t[14:16])
            key = (tick.partitionkey, second - second % 10)
            acc = touched.get(key)
            if acc is None:
                found = db.execute("SELECT count, total FROM state WHERE key = ? AND win = ?",
                                   key).fetchone()
                acc = touched[key] = list(found) if found else [0, 0]
            acc[0] += 1
            acc[1] += tick.data["amount"]
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
                       [(k, w, c, s) for (k, w), (c, s) in touched.items()])
        position = rows[-1][0] + 1
        db.execute("UPDATE position SET off = ?", (position,))
        db.execute("COMMIT")
    return {"events": n, "seconds": time.perf_counter() - started}


class _Order(msgspec.Struct):
    partitionkey: str
    data: Any


def dict_loop_b(n: int) -> dict[str, Any]:
    initial, orders, updates = events_b(n)
    decode = msgspec.json.Decoder(_Order).decode
    encode = msgspec.json.encode
    started = time.perf_counter()
    table = {k: decode(v).data for k, v in initial}
    out = []
    u = 0
    for i, (_, value) in enumerate(orders):
        while u < len(updates) and updates[u][1] <= i:
            table[updates[u][0]] = decode(updates[u][2]).data
            u += 1
        order = decode(value)
        out.append(encode({"event": order.data, "customer": table.get(order.partitionkey)}))
    return {"events": n, "seconds": time.perf_counter() - started}


def sqlite_floor_b(n: int, path: str) -> dict[str, Any]:
    """By hand: the table's updates and the orders read 1,000 at a time, the table's rows
    upserted, each order joined against the table and its output inserted, one commit per
    1,000."""
    initial, orders, updates = events_b(n)
    merged: list[tuple[str, bytes, int]] = [(k, v, 1) for k, v in initial]
    u = 0
    for i, (k, v) in enumerate(orders):
        while u < len(updates) and updates[u][1] <= i:
            merged.append((updates[u][0], updates[u][2], 1))
            u += 1
        merged.append((k, v, 0))
    db = _raw_backlog(path, [(k, v) for k, v, _ in merged], kinds=[x for _, _, x in merged])
    db.execute("CREATE TABLE customers (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
    db.execute("CREATE TABLE enriched (off INTEGER PRIMARY KEY, value BLOB)")
    decode = msgspec.json.Decoder(_Order).decode
    encode = msgspec.json.encode
    started = time.perf_counter()
    position = 0
    while True:
        rows = db.execute("SELECT off, kind, value FROM records WHERE off >= ? ORDER BY off "
                          "LIMIT 1000", (position,)).fetchall()
        if not rows:
            break
        db.execute("BEGIN")
        upserts: dict[str, bytes] = {}
        outputs = []
        for off, kind, value in rows:
            event = decode(value)
            if kind:
                upserts[event.partitionkey] = encode(event.data)
                continue
            row = upserts.get(event.partitionkey)
            if row is None:
                found = db.execute("SELECT value FROM customers WHERE key = ?",
                                   (event.partitionkey,)).fetchone()
                row = found[0] if found else None
            outputs.append((off, encode({"event": event.data,
                                         "customer": None if row is None
                                         else msgspec.json.decode(row)})))
            if upserts:  # keep the join's view of the table in order
                db.executemany("INSERT OR REPLACE INTO customers VALUES (?, ?)",
                               list(upserts.items()))
                upserts.clear()
        db.executemany("INSERT OR REPLACE INTO customers VALUES (?, ?)", list(upserts.items()))
        db.executemany("INSERT INTO enriched VALUES (?, ?)", outputs)
        position = rows[-1][0] + 1
        db.execute("UPDATE position SET off = ?", (position,))
        db.execute("COMMIT")
    return {"events": n, "seconds": time.perf_counter() - started}


def _raw_backlog(path: str, records: list[tuple[str, bytes]],
                 kinds: list[int] | None = None) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE records (off INTEGER PRIMARY KEY, kind INTEGER, key TEXT,"
               " value BLOB)")
    db.execute("CREATE TABLE position (off INTEGER)")
    db.execute("INSERT INTO position VALUES (0)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)",
                   [(i, kinds[i] if kinds else 0, k, v) for i, (k, v) in enumerate(records)])
    db.execute("COMMIT")
    return db


# -- Bytewax (in memory, where it installs) --------------------------------------------------

def bytewax_a(n: int) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from bytewax import operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators import windowing as win
    from bytewax.testing import TestingSink, TestingSource, run_main

    decode = msgspec.json.Decoder(_Tick).decode
    records = events_a(n)
    started = time.perf_counter()
    flow = Dataflow("a")
    stream = op.input("in", flow, TestingSource([v for _, v in records], batch_size=1000))
    ticks = op.map("decode", stream, decode)
    keyed = op.key_on("key", ticks, lambda t: t.partitionkey)
    clock = win.EventClock(lambda t: datetime.fromisoformat(t.time),
                           wait_for_system_duration=timedelta(seconds=0))
    windower = win.TumblingWindower(length=timedelta(seconds=10),
                                    align_to=datetime(2026, 1, 1, tzinfo=UTC))
    folded = win.fold_window("sum", keyed, clock, windower, lambda: [0, 0],
                             lambda acc, t: [acc[0] + 1, acc[1] + t.data["amount"]],
                             lambda a, b: [a[0] + b[0], a[1] + b[1]])
    out: list[Any] = []
    op.output("out", folded.down, TestingSink(out))
    run_main(flow)
    return {"events": n, "seconds": time.perf_counter() - started}


def bytewax_b(n: int) -> dict[str, Any]:
    from bytewax import operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    initial, orders, updates = events_b(n)
    merged: list[tuple[int, bytes]] = [(1, v) for _, v in initial]
    u = 0
    for i, (_, v) in enumerate(orders):
        while u < len(updates) and updates[u][1] <= i:
            merged.append((1, updates[u][2]))
            u += 1
        merged.append((0, v))
    decode = msgspec.json.Decoder(_Order).decode
    started = time.perf_counter()
    flow = Dataflow("b")
    stream = op.input("in", flow, TestingSource(merged, batch_size=1000))
    keyed = op.key_on("key", op.map("decode", stream, lambda kv: (kv[0], decode(kv[1]))),
                      lambda kv: kv[1].partitionkey)

    def join(table: Any, item: tuple[int, _Order]) -> tuple[Any, list[Any]]:
        kind, event = item
        if kind:
            return event.data, []
        return table, [msgspec.json.encode({"event": event.data, "customer": table})]

    joined = op.stateful_flat_map("join", keyed, lambda t, i: join(t, i))  # type: ignore[arg-type]
    out: list[Any] = []
    op.output("out", joined, TestingSink(out))
    run_main(flow)
    return {"events": n, "seconds": time.perf_counter() - started}


# -- the run ---------------------------------------------------------------------------------

def _child(case: str, n: int, shared: str, extra: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        runners = {
            "load-a": lambda: load_a(n, shared), "load-b": lambda: load_b(n, shared),
            "setpiece-a": lambda: setpiece_a(n, shared, extra),
            "setpiece-b": lambda: setpiece_b(n, shared),
            "dict-a": lambda: dict_loop_a(n), "dict-b": lambda: dict_loop_b(n),
            "sqlite-a": lambda: sqlite_floor_a(n, path),
            "sqlite-b": lambda: sqlite_floor_b(n, path),
            "bytewax-a": lambda: bytewax_a(n), "bytewax-b": lambda: bytewax_b(n),
        }
        result = runners[case]()
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(case: str, n: int, shared: str = "", extra: int = 0) -> dict[str, Any] | str:
    """Run ``case`` in a child process (its own peak memory); its result, or why it failed."""
    done = subprocess.run([sys.executable, __file__, "--child", case, "--events", str(n),
                           "--shared", shared, "--extra", str(extra)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if case.startswith("bytewax") and "No module named 'bytewax'" in done.stderr:
            return "not installed (pip install bytewax)"
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--case", default="all", choices=["all", "a", "b"])
    parser.add_argument("--no-bytewax", action="store_true", help="leave Bytewax out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shared", default="", help=argparse.SUPPRESS)
    parser.add_argument("--extra", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.events, args.shared, args.extra)
        return
    titles = {"a": "(a) tumbling 10 s count-and-sum, 10,000 keys",
              "b": "(b) stream-table join, 10,000 customers, 50,000 updates"}
    for case in ("a", "b") if args.case == "all" else (args.case,):
        print(f"{titles[case]}, {args.events:,} events")
        with tempfile.TemporaryDirectory() as tmp:  # the backlog, loaded by its own process
            shared = os.path.join(tmp, "backlog.db")
            loaded = measure(f"load-{case}", args.events, shared)
            if isinstance(loaded, str):
                print(f"  loading the backlog {loaded}")
                continue
            result = measure(f"setpiece-{case}", args.events, shared, loaded.get("results", 0))
            _show("setpiece (SQLite file, durable)", result)
        for who, label in (("sqlite", "SQLite by hand, commit per 1,000 (durable floor)"),
                           ("dict", "plain-Python dict loop (floor)"),
                           ("bytewax", "Bytewax (in memory)")):
            if who == "bytewax" and args.no_bytewax:
                continue
            _show(label, measure(f"{who}-{case}", args.events))


def _show(label: str, result: dict[str, Any] | str) -> None:
    if isinstance(result, str):
        print(f"  {label:52s} {result}")
    else:
        rate = result["events"] / result["seconds"]
        print(f"  {label:52s} {rate:>10,.0f} events/s   peak {result['peak_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
