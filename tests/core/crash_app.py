"""A small two-hop stack for the crash test, run as its own process (see test_crash.py).

    python crash_app.py ENGINE init [STORE]    # create the streams and groups, then exit
    python crash_app.py ENGINE run [STORE]     # process until killed
    python crash_app.py ENGINE drain [STORE]   # process until everything is handled, then exit 0

ENGINE is an engine URL (``sqlite:///…``, ``nats://…``) or the path of an SQLite file; STORE is
the PostgreSQL URL the NATS engine needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import nats

from setpiece import Context, DrainTimeout, Event, Runtime, RuntimeConfig, Service, Stack


def build() -> Stack:
    counter = Service("counter")

    @counter.on({"type": ["work"]})
    async def count(event: Event, ctx: Context) -> list[Event]:
        key, item = event.data["customer"], event.data["item"]
        await ctx.store.put(key, await ctx.store.get(key, 0) + 1)
        out = [Event(type="done", data={"item": item})]
        last = await ctx.store.get(f"order:{key}", -1)  # a customer's items come in order
        if item <= last:
            out.append(Event(type="disorder", data={"customer": key, "item": item,
                                                    "after": last}))
        await ctx.store.put(f"order:{key}", max(item, last))
        return out

    tally = Service("tally")

    @tally.on({"type": ["done"]})
    async def record(event: Event, ctx: Context) -> None:
        key = f"item:{event.data['item']}"
        await ctx.store.put(key, await ctx.store.get(key, 0) + 1)

    return Stack("crash", services=[counter, tally])


async def main(engine: str, mode: str, store: str | None) -> None:
    url = engine if "://" in engine else f"sqlite:///{engine}"
    config = RuntimeConfig(batch_size=64, heartbeat_interval=0.1, session_timeout=0.5)
    async with build().start(engine=url, store=store, config=config) as rt:
        if mode == "run":
            # SIGUSR1: say where each group stands (the test asks when progress stops)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, lambda: _say_what_waits(rt))
            print("ready", flush=True)
            await asyncio.Event().wait()
        elif mode == "drain":
            try:
                await rt.drain(timeout=240)
            except DrainTimeout:
                await _say_where_it_stands(rt)
                raise


def _say_what_waits(rt: Runtime) -> None:
    """On stderr, at once (no I/O): the NATS connection and where each consumer's task waits;
    then, as far as the engine answers, where each group stands."""
    log = getattr(rt.engine, "_log", None)
    if log is not None:
        nc = log._nc
        print(f"NATS: connected to {nc.connected_url.netloc}, status {nc._status}, "
              f"reconnects {log.reconnects}", file=sys.stderr)
    for consumer in rt.consumers:
        for task in asyncio.all_tasks():
            if task.get_name() == consumer.label:
                print(f"-- {consumer.label}: owns {consumer.owned}, busy {consumer.busy}",
                      file=sys.stderr)
                task.print_stack(limit=8, file=sys.stderr)
    sys.stderr.flush()
    asyncio.get_running_loop().create_task(_say_where_it_stands(rt))


async def _say_where_it_stands(rt: Runtime) -> None:
    """On stderr, for the test's failure: each group behind, per partition, its committed
    offset, the log's end, and what a read at the committed offset returns now."""
    behind = False
    for consumer in rt.consumers:
        ends = await rt.engine.end_offsets(consumer.stream)
        committed = await rt.engine.committed(consumer.group, consumer.stream)
        for partition, end in enumerate(ends):
            at = committed.get(partition, 0)
            if at < end:
                behind = True
                found = await rt.engine.read(consumer.stream, partition, at, 5)
                print(f"{consumer.group} {consumer.stream}[{partition}]: committed {at}, end "
                      f"{end}, owned here {partition in consumer.owned}, busy {consumer.busy}, "
                      f"a read at {at} gives {[r.offset for r in found]}",
                      file=sys.stderr, flush=True)
                await _say_what_nats_holds(rt, consumer.stream, partition, at)
    if not behind:
        print("every group is at the log's end", file=sys.stderr, flush=True)


async def _say_what_nats_holds(rt: Runtime, stream: str, partition: int, at: int) -> None:
    """On the NATS engine: the read hints, a read past them, and what each server says."""
    engine: Any = rt.engine
    log = getattr(engine, "_log", None)
    if log is None:
        return
    key = (stream, partition)
    print(f"  hints: end {engine._ends.get(key)}, real read {engine._real_read.get(key)}, "
          f"leader said {log._leader_said.get(key)}, now {time.monotonic():.1f}",
          file=sys.stderr)
    try:
        found, at_end = await log.read(stream, partition, at, 5)
        print(f"  a read past the hints: {[r.offset for r in found]}, at end {at_end}",
              file=sys.stderr)
    except Exception as exc:
        print(f"  a read past the hints failed: {exc!r}", file=sys.stderr)
    name = log.js_name(stream, partition)
    try:
        info = await log._replies.request(f"$JS.API.STREAM.INFO.{name}", b"", 5)
        body = json.loads(info.data)
        print(f"  STREAM.INFO: state {body.get('state')}, cluster {body.get('cluster')}",
              file=sys.stderr)
    except Exception as exc:
        print(f"  STREAM.INFO failed: {exc!r}", file=sys.stderr)
    for server in os.environ.get("SETPIECE_DIAG_SERVERS", "").split(","):
        if not server:
            continue
        nc = await nats.connect(server, allow_reconnect=False)
        try:
            msg = await nc.request(f"$JS.API.DIRECT.GET.{name}",
                                   json.dumps({"seq": at + 1}).encode(), timeout=2)
            print(f"  direct get via {server}: {msg.headers}", file=sys.stderr)
        except Exception as exc:
            print(f"  direct get via {server} failed: {exc!r}", file=sys.stderr)
        finally:
            await nc.close()
    print(flush=True, file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
