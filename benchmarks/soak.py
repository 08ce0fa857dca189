"""Soak: a steady load through the product-registration example for N minutes, watched.

    python benchmarks/soak.py --minutes 10 [--rate 100] [--engines sqlite,nats] [--workers 1]

For each engine (an SQLite file; NATS JetStream + PostgreSQL started from their wheels), the
harness starts the manufacturer's stand-in webhook, ``--workers`` ``setpiece run`` processes of
``examples.product_registration.app:stack``, and a producer that publishes
``registration_submitted`` events at ``--rate`` per second (each a new customer and serial
number). Every minute it prints: events published and handled per second, end-to-end latency
p50/p99 (from the publish to the loyalty service's ``points_awarded``, two hops later), the lag
of every consumer group, and the resident memory and open file descriptors of every process.

At the end it judges the run, and exits 1 if it fails: every process's RSS within 10% of its
value after the first minute, the lag at the end no more than a few seconds of load, no dead
letter, every worker alive. The baseline is the run's own first minute.

Backpressure: ``publish`` returns once the events are durable, so a producer is paced by the
engine's commits and never buffers in memory; a worker reads ``--batch-size`` records per
partition per turn, so a backlog waits on disk, not in a worker. ``--burst SECONDS`` ends the run
with the producer publishing as fast as it can for that long, and prints the workers' RSS
before and after it beside the lag the burst left (what a faster producer costs them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from examples.product_registration.app import build_stack  # noqa: E402 - after sys.path
from setpiece import Event  # noqa: E402
from setpiece.engine import open_engine  # noqa: E402
from setpiece.event import decode_event  # noqa: E402

APP = "examples.product_registration.app:stack"
# The manufacturer's stand-in keeps every POST it gets (it is a test fixture): it runs in its
# own process, outside what the soak measures.
STAND_IN = """
import sys, time
from examples.product_registration.manufacturer import ManufacturerWebhook
with ManufacturerWebhook() as hook:
    print(hook.url, flush=True)
    while True:
        time.sleep(3600)
"""


def start_stand_in() -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().decode().strip()


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Minute:
    published: int = 0
    handled: int = 0
    latencies: list[float] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, store: str | None, work: Path) -> None:
        self.args, self.url, self.store, self.work = args, url, store, work
        self.sent: dict[str, float] = {}
        self.minute = Minute()
        self.offsets: dict[int, int] = {}
        self.stop = False
        self.workers: list[subprocess.Popen[bytes]] = []
        self.run_id = f"{uuid.uuid4().int % 1000:03d}"  # digits: the example's ids are checked

    def start_workers(self, manufacturer: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
               "OUTBOX_DIR": str(self.work / "outbox"), "MANUFACTURER_URL": manufacturer}
        for n in range(self.args.workers):
            command = [sys.executable, "-m", "setpiece.cli", "run", APP, "--engine", self.url,
                       "--quiet", "--log-level", "warning"]
            if self.store:
                command += ["--store", self.store]
            with (self.work / f"worker-{n}.log").open("wb") as err:
                self.workers.append(subprocess.Popen(command, env=env, cwd=ROOT,
                                                     stdout=subprocess.DEVNULL, stderr=err))

    async def produce(self, runtime: object, rate: float) -> None:
        """Publish ``rate`` events a second, in ten batches a second, until told to stop."""
        publish_many = runtime.publish_many  # type: ignore[attr-defined]
        tick, started, n = 0.1, time.monotonic(), 0
        while not self.stop:
            due = int((time.monotonic() - started) * rate) - n
            if due > 0:
                batch = []
                for _ in range(due):
                    n += 1
                    customer = f"cu-{self.run_id}{n:09d}"
                    event = Event(
                        type="registration_submitted", source="soak",
                        subject=f"SN-{n:012d}", partitionkey=customer,
                        data={"customer_id": customer, "email": f"c{n}@example.com",
                              "serial_number": f"SN-{self.run_id}{n:012d}", "model": "Toaster T3",
                              "purchase_date": "2026-02-01", "country": "GB"})
                    batch.append(event)
                now = time.time()
                for event in await publish_many(batch):
                    self.sent[event.id] = now
                self.minute.published += len(batch)
            await asyncio.sleep(tick)

    async def burst(self, runtime: object, seconds: float) -> int:
        """Publish as fast as publishing allows for ``seconds``; returns how many."""
        publish_many = runtime.publish_many  # type: ignore[attr-defined]
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            batch = [Event(type="registration_submitted", source="soak-burst",
                           partitionkey=f"cu-9{n + i:09d}",
                           data={"customer_id": f"cu-9{n + i:09d}", "email": "b@example.com",
                                 "serial_number": f"SN-9{n + i:012d}", "model": "Toaster T3",
                                 "purchase_date": "2026-02-01", "country": "GB"})
                     for i in range(500)]
            await publish_many(batch)
            n += len(batch)
        return n

    async def watch(self, engine: object) -> None:
        """Read the bus as it grows: each ``points_awarded`` ends one measured journey."""
        read = engine.read  # type: ignore[attr-defined]
        ends = await engine.end_offsets("bus.default")  # type: ignore[attr-defined]
        self.offsets = dict(enumerate(ends))
        while not self.stop:
            for partition, offset in list(self.offsets.items()):
                records = await read("bus.default", partition, offset, 2000)
                for record in records:
                    event = decode_event(record.value)
                    if event.type == "points_awarded":
                        sent = self.sent.pop(event.correlationid or "", None)
                        if sent is not None:
                            self.minute.handled += 1
                            self.minute.latencies.append(_epoch(event.time) - sent)
                if records:
                    self.offsets[partition] = records[-1].offset + 1
            await asyncio.sleep(0.2)


async def run_one(args: argparse.Namespace, label: str, url: str, store: str | None,
                  work: Path) -> bool:
    from setpiece._assembly import new_runtime

    stand_in, manufacturer = start_stand_in()
    try:
        stack = build_stack(work / "outbox", manufacturer)
        engine = await open_engine(url, store=store)
        runtime = new_runtime(stack, engine)
        await runtime.provision()  # streams and groups; this process consumes nothing
        soak = Soak(args, url, store, work)
        soak.start_workers(manufacturer)
        await asyncio.sleep(3)
        me = os.getpid()
        tasks = [asyncio.create_task(soak.produce(runtime, args.rate)),
                 asyncio.create_task(soak.watch(engine))]
        print(f"\n== {label}: {args.rate:g} registrations/s for {args.minutes} min, "
              f"{args.workers} worker(s)")
        print("min  published/s  handled/s  p50 ms  p99 ms      lag  "
              "RSS MiB (harness, workers)       fds")
        first_rss: list[int] = []
        sizes: list[int] = []
        lags: list[int] = []
        ok = True
        try:
            for minute in range(1, args.minutes + 1):
                await asyncio.sleep(60)
                done, soak.minute = soak.minute, Minute()
                per_group = await runtime.lag()
                lag = sum(per_group.values())
                lags.append(lag)
                behind = sorted(per_group.items(), key=lambda kv: -kv[1])[:3]
                pids = [me, *(w.pid for w in soak.workers)]
                sizes = [rss(p) for p in pids]
                if minute == 1:
                    first_rss = sizes
                lat = done.latencies
                print(f"{minute:3}  {done.published / 60:11.1f}  {done.handled / 60:9.1f}  "
                      f"{percentile(lat, 0.5) * 1000:6.0f}  {percentile(lat, 0.99) * 1000:6.0f}  "
                      f"{lag:7}  {' '.join(f'{s / 2**20:6.1f}' for s in sizes):30}  "
                      f"{' '.join(str(fds(p)) for p in pids)}", flush=True)
                if lag > args.rate * 10:
                    print(f"     most behind: {behind}", flush=True)
            if args.burst:
                before = [rss(w.pid) for w in soak.workers]
                published = await soak.burst(runtime, args.burst)
                await asyncio.sleep(5)
                after = [rss(w.pid) for w in soak.workers]
                lag = sum((await runtime.lag()).values())
                print(f"burst: {published} events in {args.burst:g} s "
                      f"({published / args.burst:,.0f}/s, publish awaited each durable); "
                      f"workers' RSS {' '.join(f'{b / 2**20:.1f}' for b in before)} -> "
                      f"{' '.join(f'{a / 2**20:.1f}' for a in after)} MiB; lag left {lag}")
        finally:
            soak.stop = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            dead = await runtime.dead_letters()
            alive = all(w.poll() is None for w in soak.workers)
            for worker in soak.workers:
                worker.terminate()
            for worker in soak.workers:
                worker.wait(timeout=60)
            await runtime.stop()
            await engine.close()
        if args.minutes >= 2 and first_rss:
            for name, a, b in zip(["harness", *[f"worker {i}" for i in range(args.workers)]],
                                  first_rss, sizes, strict=True):
                growth = (b - a) / a if a else 0.0
                verdict = "ok" if growth <= 0.10 else "GREW"
                ok &= growth <= 0.10
                print(f"   {name}: RSS {a / 2**20:.1f} MiB after minute 1, {b / 2**20:.1f} MiB "
                      f"at the end ({growth:+.1%}) {verdict}")
        bound = max(10 * args.rate, 1000)
        lag_ok = not lags or lags[-1] <= bound
        ok &= lag_ok and not dead and alive
        print(f"   lag per minute {lags} (bound {bound}: {'ok' if lag_ok else 'GREW'}); "
              f"dead letters {len(dead)}; workers alive: {alive}")
        if dead:
            print(f"   first dead letter: {dead[0]}")
        return ok
    finally:
        stand_in.kill()
        stand_in.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="registrations per second")
    parser.add_argument("--engines", default="sqlite,nats")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--burst", type=float, default=0.0,
                        help="end with SECONDS of publishing as fast as possible")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="sp-soak-") as tmp:
        for kind in args.engines.split(","):
            work = Path(tmp) / kind
            work.mkdir()
            with ExitStack() as servers:
                if kind == "sqlite":
                    url, store = f"sqlite:///{work / 'soak.db'}", None
                elif kind == "nats":
                    from setpiece.engine.servers import nats_server, postgres_server

                    nats = servers.enter_context(nats_server())
                    pg = servers.enter_context(postgres_server())
                    url, store = f"{nats.url}?prefix=soak", f"{pg.url}?schema=soak"
                else:
                    parser.error(f"unknown engine {kind!r} (sqlite, nats)")
                ok &= asyncio.run(run_one(args, kind, url, store, work))
    print("\nsoak:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
